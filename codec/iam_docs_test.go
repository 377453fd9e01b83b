package codec_test

// The IAM and key policies in docs/iam are what users copy. These tests
// drive a codec in each role's configuration against the in-memory KMS,
// record every KMS call it makes (operation, key, encryption context),
// and evaluate the documented policy on each call, as AWS would for the
// parts of the policy language the documents use.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// The names the policy documents use.
const (
	docAccount   = "111122223333"
	docKeyARN    = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	docOldKeyARN = "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
	docAlias     = "alias/temporal-payloads"
	docAliasARN  = "arn:aws:kms:us-east-1:111122223333:alias/temporal-payloads"
	docNamespace = "payments"
	// otherKeyARN is a key the documents do not name.
	otherKeyARN = "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"
)

// kmsCall is what a policy is evaluated on: the action, the key it acts
// on (after an alias is followed, as AWS authorizes it) and the
// encryption context, nil when the call carries none.
type kmsCall struct {
	action   string
	resource string
	context  map[string]string
}

func (c kmsCall) String() string {
	return fmt.Sprintf("%s on %s with context %v", c.action, c.resource, c.context)
}

// recordingKMS records every successful call made through it.
type recordingKMS struct {
	kms.API
	mu    sync.Mutex
	calls []kmsCall
}

func (r *recordingKMS) record(c kmsCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *recordingKMS) GenerateDataKey(ctx context.Context, in *awskms.GenerateDataKeyInput, opts ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	out, err := r.API.GenerateDataKey(ctx, in, opts...)
	if err == nil {
		r.record(kmsCall{"kms:GenerateDataKey", aws.ToString(out.KeyId), in.EncryptionContext})
	}
	return out, err
}

func (r *recordingKMS) Decrypt(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	out, err := r.API.Decrypt(ctx, in, opts...)
	if err == nil {
		r.record(kmsCall{"kms:Decrypt", aws.ToString(out.KeyId), in.EncryptionContext})
	}
	return out, err
}

func (r *recordingKMS) DescribeKey(ctx context.Context, in *awskms.DescribeKeyInput, opts ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	out, err := r.API.DescribeKey(ctx, in, opts...)
	if err == nil {
		r.record(kmsCall{"kms:DescribeKey", aws.ToString(out.KeyMetadata.Arn), nil})
	}
	return out, err
}

// stringList is a policy field that is a string or a list of strings.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

type policyStatement struct {
	Sid       string
	Effect    string
	Principal *struct{ AWS stringList }
	Action    stringList
	Resource  stringList
	Condition map[string]map[string]stringList
}

type policyDocument struct {
	Version   string
	Statement []policyStatement
}

func loadPolicy(t *testing.T, name string) policyDocument {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "iam", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields() // NotAction, NotResource...: not understood here
	var doc policyDocument
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("docs/iam/%s: %v", name, err)
	}
	if doc.Version != "2012-10-17" || len(doc.Statement) == 0 {
		t.Fatalf("docs/iam/%s: version %q, %d statements", name, doc.Version, len(doc.Statement))
	}
	for _, s := range doc.Statement {
		if s.Effect != "Allow" {
			t.Fatalf("docs/iam/%s: statement %q: only Allow statements are evaluated here", name, s.Sid)
		}
	}
	return doc
}

// forPrincipal returns the statements that apply to principal: all of an
// IAM policy's, only those naming principal in a key policy.
func (d policyDocument) forPrincipal(principal string) []policyStatement {
	var out []policyStatement
	for _, s := range d.Statement {
		if s.Principal == nil || slices.Contains(s.Principal.AWS, principal) {
			out = append(out, s)
		}
	}
	return out
}

// glob matches s against an IAM pattern, where * is any run of
// characters and ? one character.
func glob(pattern, s string, foldCase bool) bool {
	re := regexp.QuoteMeta(pattern)
	re = strings.ReplaceAll(re, `\*`, `.*`)
	re = strings.ReplaceAll(re, `\?`, `.`)
	if foldCase {
		re = "(?i)" + re
	}
	return regexp.MustCompile("^" + re + "$").MatchString(s)
}

func anyGlob(patterns []string, s string, foldCase bool) bool {
	for _, p := range patterns {
		if glob(p, s, foldCase) {
			return true
		}
	}
	return false
}

// conditionValues returns the values of a condition key for call, and
// whether the request has the key at all.
func conditionValues(t *testing.T, key string, call kmsCall) ([]string, bool) {
	t.Helper()
	switch {
	case strings.EqualFold(key, "kms:EncryptionContextKeys"):
		if call.context == nil {
			return nil, false
		}
		keys := make([]string, 0, len(call.context))
		for k := range call.context {
			keys = append(keys, k)
		}
		return keys, true
	case strings.HasPrefix(strings.ToLower(key), "kms:encryptioncontext:"):
		v, ok := call.context[key[len("kms:EncryptionContext:"):]]
		return []string{v}, ok
	}
	t.Fatalf("condition key %q is not understood here", key)
	return nil, false
}

// conditionsHold evaluates a statement's Condition block on call.
func conditionsHold(t *testing.T, cond map[string]map[string]stringList, call kmsCall) bool {
	t.Helper()
	for op, keys := range cond {
		for key, allowed := range keys {
			got, present := conditionValues(t, key, call)
			switch op {
			case "StringEquals":
				// A key absent from the request never equals anything.
				if !present || len(got) != 1 || !slices.Contains(allowed, got[0]) {
					return false
				}
			case "ForAllValues:StringEquals":
				// Every value in the request is allowed; true when the
				// request has none.
				for _, v := range got {
					if !slices.Contains(allowed, v) {
						return false
					}
				}
			default:
				t.Fatalf("condition operator %q is not understood here", op)
			}
		}
	}
	return true
}

// allows reports whether some statement allows call.
func allows(t *testing.T, statements []policyStatement, call kmsCall) bool {
	t.Helper()
	for _, s := range statements {
		if anyGlob(s.Action, call.action, true) && anyGlob(s.Resource, call.resource, false) && conditionsHold(t, s.Condition, call) {
			return true
		}
	}
	return false
}

// grantedActions lists the actions the statements name, as written.
func grantedActions(statements []policyStatement) []string {
	set := map[string]bool{}
	for _, s := range statements {
		for _, a := range s.Action {
			set[a] = true
		}
	}
	return sortedKeys(set)
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// docKMS is an in-memory KMS holding the documents' keys and alias, with
// history already written under both keys by other processes in the
// documents' namespace: what a new process of each role finds.
func docKMS(t *testing.T) (*kmstest.KMS, []*commonpb.Payload) {
	t.Helper()
	fake := kmstest.New()
	fake.AddKey(docKeyARN)
	fake.AddKey(docOldKeyARN)
	fake.SetAlias(docAlias, docKeyARN)
	var history []*commonpb.Payload
	for _, key := range []string{docOldKeyARN, docKeyARN} {
		writer := newCodec(t, codec.Options{KMS: fake, KeyID: key, Namespace: docNamespace})
		history = append(history, encode(t, writer, payloads(2)...)...)
	}
	return fake, history
}

// roleCalls runs a fresh codec in a role's configuration the way the role
// uses it, and returns the KMS calls it made.
type roleCalls func(t *testing.T) []kmsCall

// writerCalls: a worker or client whose KeyID is an alias, rotated from
// the old key, first replaying history (as a worker picking up a
// workflow does), then writing and reading back its own payloads.
func writerCalls(t *testing.T) []kmsCall {
	fake, history := docKMS(t)
	rec := &recordingKMS{API: fake}
	c := newCodec(t, codec.Options{KMS: rec, KeyID: docAlias, DecryptKeyIDs: []string{docOldKeyARN}, Namespace: docNamespace})
	mustDecode(t, c, history)
	mustDecode(t, c, encode(t, c, payloads(2)...))
	return rec.calls
}

// readerCalls: a process that only reads, configured as `kmscodec
// decode`, `kmscodec serve` without --enable-encode and a replayer are:
// encryption disabled, the alias and the old key allowed.
func readerCalls(t *testing.T) []kmsCall {
	fake, history := docKMS(t)
	rec := &recordingKMS{API: fake}
	c := newCodec(t, codec.Options{KMS: rec, KeyID: docAlias, DecryptKeyIDs: []string{docOldKeyARN}, DisableEncryption: true})
	mustDecode(t, c, history)
	if out := encode(t, c, payload("x")); string(out[0].Metadata["encoding"]) != "json/plain" {
		t.Fatal("a reader encrypted")
	}
	return rec.calls
}

// The policies of the roles that make KMS calls, in both forms: an IAM
// policy on the role, and the role's statements in the key policy.
var callingRoles = []struct {
	name, file, principal string
	calls                 roleCalls
}{
	{"writer (workers and clients)", "writer.json", "arn:aws:iam::111122223333:role/payments-worker", writerCalls},
	{"reader (replayers, kmscodec decode)", "reader.json", "arn:aws:iam::111122223333:role/payments-reader", readerCalls},
	{"codec server (decode only)", "codec-server.json", "arn:aws:iam::111122223333:role/temporal-codec-server", readerCalls},
}

func TestIAMPoliciesGrantExactlyTheKMSCallsEachRoleMakes(t *testing.T) {
	keyPolicy := loadPolicy(t, "key-policy.json")
	for _, role := range callingRoles {
		calls := role.calls(t)
		called := map[string]bool{}
		for _, c := range calls {
			called[c.action] = true
		}
		for _, form := range []struct {
			name       string
			statements []policyStatement
			keyPolicy  bool // applies to the key it is attached to only
		}{
			{"docs/iam/" + role.file, loadPolicy(t, role.file).Statement, false},
			{"docs/iam/key-policy.json for " + role.principal, keyPolicy.forPrincipal(role.principal), true},
		} {
			t.Run(role.name+"/"+form.name, func(t *testing.T) {
				for _, c := range calls {
					if !allows(t, form.statements, c) {
						t.Errorf("the role calls %s, which the policy does not allow", c)
					}
				}
				if granted, want := grantedActions(form.statements), sortedKeys(called); !slices.Equal(granted, want) {
					t.Errorf("the policy grants %v; the role calls %v", granted, want)
				}
				checkScopedToTheNamespaceAndKeys(t, form.statements, calls, !form.keyPolicy)
			})
		}
	}
}

// checkScopedToTheNamespaceAndKeys makes each call the role made again
// for another namespace, with a further context key, and (for an IAM
// policy, which is not attached to a key) on a key the documents do not
// name: the policy must refuse each of them.
func checkScopedToTheNamespaceAndKeys(t *testing.T, statements []policyStatement, calls []kmsCall, checkKeys bool) {
	t.Helper()
	for _, c := range calls {
		if _, ok := c.context[codec.NamespaceContextKey]; ok {
			other := c
			other.context = map[string]string{codec.NamespaceContextKey: "orders"}
			if allows(t, statements, other) {
				t.Errorf("the policy allows %s: it is not limited to namespace %q", other, docNamespace)
			}
			extra := c
			extra.context = map[string]string{codec.NamespaceContextKey: docNamespace, "smuggled": "x"}
			if allows(t, statements, extra) {
				t.Errorf("the policy allows %s: it does not limit the context's keys", extra)
			}
		}
		elsewhere := c
		elsewhere.resource = otherKeyARN
		if checkKeys && allows(t, statements, elsewhere) {
			t.Errorf("the policy allows %s: it is not limited to the documented keys", elsewhere)
		}
	}
}

// DescribeKey carries no encryption context, so a statement that grants
// it under an encryption-context condition never matches it: the codec's
// alias lookup is then refused and every payload fails.
func TestNoPolicyPutsDescribeKeyUnderAnEncryptionContextCondition(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "docs", "iam", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no policies in docs/iam (%v)", err)
	}
	for _, file := range files {
		for _, s := range loadPolicy(t, filepath.Base(file)).Statement {
			if !anyGlob(s.Action, "kms:DescribeKey", true) {
				continue
			}
			for _, keys := range s.Condition {
				for key := range keys {
					if strings.HasPrefix(strings.ToLower(key), "kms:encryptioncontext") {
						t.Errorf("%s: statement %q grants kms:DescribeKey under condition %s, which DescribeKey never satisfies", filepath.Base(file), s.Sid, key)
					}
				}
			}
		}
	}
}

// The key administrator manages keys and aliases, rotation included,
// and can use no key to encrypt or decrypt.
func TestTheKeyAdministratorCanManageKeysButNotUseThem(t *testing.T) {
	const admin = "arn:aws:iam::111122223333:role/kms-key-admin"
	keyPolicy := loadPolicy(t, "key-policy.json")
	for _, form := range []struct {
		name       string
		statements []policyStatement
	}{
		{"docs/iam/key-administrator.json", loadPolicy(t, "key-administrator.json").Statement},
		{"docs/iam/key-policy.json", keyPolicy.forPrincipal(admin)},
	} {
		t.Run(form.name, func(t *testing.T) {
			ctx := map[string]string{codec.NamespaceContextKey: docNamespace}
			for _, action := range []string{"kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:CreateGrant"} {
				for _, c := range []kmsCall{{action, docKeyARN, ctx}, {action, docKeyARN, nil}} {
					if allows(t, form.statements, c) {
						t.Errorf("the key administrator may %s", c)
					}
				}
			}
			for _, c := range []kmsCall{
				{"kms:DescribeKey", docKeyARN, nil},
				{"kms:EnableKeyRotation", docKeyARN, nil},
				{"kms:DisableKey", docOldKeyARN, nil},
				{"kms:EnableKey", docOldKeyARN, nil},
				{"kms:ScheduleKeyDeletion", docOldKeyARN, nil},
				{"kms:CancelKeyDeletion", docOldKeyARN, nil},
				{"kms:UpdateAlias", docAliasARN, nil},
				{"kms:UpdateAlias", docKeyARN, nil},
			} {
				if !allows(t, form.statements, c) {
					t.Errorf("the key administrator may not %s", c)
				}
			}
		})
	}
}

// The policy examples in docs/SECURITY.md are statements of docs/iam,
// which the tests above check, and not a copy that can drift.
func TestSecurityDocQuotesOnlyCheckedPolicies(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "docs", "SECURITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join("..", "docs", "iam", "*.json"))
	for _, file := range files {
		for _, s := range loadPolicy(t, filepath.Base(file)).Statement {
			b, _ := json.Marshal(s)
			checked[string(b)] = true
		}
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	if len(blocks) == 0 {
		t.Fatal("docs/SECURITY.md quotes no policy")
	}
	for _, block := range blocks {
		var s policyStatement
		if err := json.Unmarshal([]byte(block[1]), &s); err != nil || s.Effect == "" {
			t.Errorf("a JSON block in docs/SECURITY.md is not a policy statement: %v", err)
			continue
		}
		if b, _ := json.Marshal(s); !checked[string(b)] {
			t.Errorf("docs/SECURITY.md quotes statement %q, which is not in docs/iam", s.Sid)
		}
	}
}
