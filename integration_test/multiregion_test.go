package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
	"github.com/temporal-kms/kmscodec/kms"
)

// TestMultiRegionFailover: workflows written in us-east-1 under a
// multi-Region key are completed and read in us-west-2 while us-east-1's
// KMS is unreachable, the us-west-2 codec unwrapping every data key with
// its own replica.
func TestMultiRegionFailover(t *testing.T) {
	const workflows = 10
	east, west := harness.StartKMS(t), harness.StartKMS(t)
	replicas := harness.SeedMultiRegionKey(t, map[string]*harness.KMS{"us-east-1": east, "us-west-2": west})
	eastProxy := harness.StartFaultProxy(t, east.URL) // the only way to us-east-1's KMS
	taskQueue := uniqueName("multiregion")
	secret := uniqueName("kmscodec-secret")
	ctx := testContext(t, 4*time.Minute)
	raw := dialRaw(t, "default")
	// Each region's codec: its own KMS as Options.KMS, the other region's
	// as a regional client, its own replica as the key to encrypt under.
	regionCodec := func(own, other string, ownURL, otherURL string) *codec.Codec {
		return newCodec(t, nil, codec.Options{
			KMS:         harness.NewKMSClient(ownURL),
			Region:      own,
			RegionalKMS: map[string]kms.API{other: harness.NewKMSClient(otherURL)},
			KeyID:       replicas[own],
			Namespace:   "default",
		})
	}
	eastCodec := func() *codec.Codec { return regionCodec("us-east-1", "us-west-2", eastProxy.URL, west.URL) }
	westCodec := func() *codec.Codec { return regionCodec("us-west-2", "us-east-1", west.URL, eastProxy.URL) }

	// us-east-1 runs the workflows up to their signal.
	eastWorker := startWorker(t, dialCodec(t, "default", eastCodec()), taskQueue, worker.Options{}, registerTwoStep)
	eastClient := dialCodec(t, "default", eastCodec())
	runs := startTwoStepWorkflows(t, ctx, eastClient, raw, taskQueue, "multiregion", secret, workflows)
	eastWorker.Stop()

	// us-east-1's KMS goes dark: every request to it is dropped.
	eastProxy.Inject(harness.FaultRule{Fault: harness.Drop, For: harness.MaxFaultWindow})
	defer eastProxy.Clear()
	eastAtCut, westAtCut := east.CallCounts(), west.CallCounts()
	t.Logf("at the cut: us-east-1 %s; us-west-2 %s", east, west)

	// us-west-2 takes over: signals, completes and reads every workflow.
	startWorker(t, dialCodec(t, "default", westCodec()), taskQueue, worker.Options{}, registerTwoStep)
	westClient := dialCodec(t, "default", westCodec())
	signalTwoStepWorkflows(t, ctx, westClient, runs, secret)
	for i, run := range runs {
		var got string
		if err := westClient.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, &got); err != nil {
			t.Fatalf("workflow %d: %v", i, err)
		}
		if want := fmt.Sprintf("before:%s-%d|after:sig-%s-%d", secret, i, secret, i); got != want {
			t.Errorf("workflow %d result = %q, want %q", i, got, want)
		}
	}
	westAfterWorkers := west.Calls(harness.OpDecrypt)

	// A fresh us-west-2 reader decodes every payload of every history.
	var payloads []*commonpb.Payload
	dataKeys := map[string]bool{}
	byRegion := map[string]int{}
	for _, run := range runs {
		for _, f := range historyPayloads(rawHistory(t, raw, run.GetID(), run.GetRunID())) {
			env, err := envelope.Parse(f.Payload)
			if err != nil {
				t.Fatalf("%s: not a kms-envelope-v1 payload: %v", f.Path, err)
			}
			payloads = append(payloads, f.Payload)
			dataKeys[env.KeyIdentity()] = true
			byRegion[env.KeyARN]++
		}
	}
	reader := westCodec()
	mustDecodeAll(t, reader, payloads)
	readerDecrypts := west.Calls(harness.OpDecrypt) - westAfterWorkers

	t.Logf("after: us-east-1 %s; us-west-2 %s; requests dropped on the way to us-east-1: %d", east, west, eastProxy.InjectedTotal())
	t.Logf("%d payloads in %d histories, by the key ARN they record: %v; %d distinct data keys; us-west-2 Decrypt calls: %d by the workers after the cut, %d by the fresh reader",
		len(payloads), len(runs), byRegion, len(dataKeys), westAfterWorkers-westAtCut[harness.OpDecrypt], readerDecrypts)

	if n := sum(east.CallCounts()) - sum(eastAtCut); n != 0 {
		t.Errorf("%d requests reached the us-east-1 KMS after the cut, want 0", n)
	}
	if n := eastProxy.InjectedTotal(); n != 0 {
		t.Errorf("%d requests were sent towards us-east-1 after the cut (and dropped), want 0", n)
	}
	if byRegion[replicas["us-east-1"]] == 0 || byRegion[replicas["us-west-2"]] == 0 {
		t.Errorf("payloads by key ARN: %v; want payloads written in both regions", byRegion)
	}
	if readerDecrypts != int64(len(dataKeys)) {
		t.Errorf("the fresh us-west-2 reader made %d Decrypt calls for %d data keys, want one each", readerDecrypts, len(dataKeys))
	}
	if west.Calls(harness.OpDecrypt)-westAtCut[harness.OpDecrypt] > int64(len(dataKeys))*2 {
		t.Errorf("us-west-2 answered %d Decrypt calls in all for %d data keys (workers, then a fresh reader): more than one each per codec",
			west.Calls(harness.OpDecrypt)-westAtCut[harness.OpDecrypt], len(dataKeys))
	}

	t.Run("the us-west-2 codec server decodes every history with its own replica", func(t *testing.T) {
		token := uniqueName("kmscodec-multiregion-token-0123456789abcdef")
		srv := startKMSCodecServer(t, west, replicas["us-west-2"], []string{"KMSCODEC_AUTH_TOKEN=" + token},
			"--region", "us-west-2", "--regional-kms", "us-east-1="+eastProxy.URL, "--region-preference", "us-east-1")
		westBefore := west.Calls(harness.OpDecrypt)
		got := postDecode(t, srv.URL, token, payloads)
		if want := mustDecodeAll(t, reader, payloads); !proto.Equal(&commonpb.Payloads{Payloads: got}, &commonpb.Payloads{Payloads: want}) {
			t.Fatal("the codec server's /decode differs from the codec's Decode")
		}
		serverDecrypts := west.Calls(harness.OpDecrypt) - westBefore
		t.Logf("codec server: %d payloads decoded, %d Decrypt calls at us-west-2; us-east-1 %s; dropped towards us-east-1: %d",
			len(got), serverDecrypts, east, eastProxy.InjectedTotal())
		if serverDecrypts != int64(len(dataKeys)) {
			t.Errorf("the codec server made %d Decrypt calls at us-west-2 for %d data keys, want one each", serverDecrypts, len(dataKeys))
		}
		if n := sum(east.CallCounts()) - sum(eastAtCut); n != 0 || eastProxy.InjectedTotal() != 0 {
			t.Errorf("%d requests reached us-east-1 and %d were sent towards it, want none", n, eastProxy.InjectedTotal())
		}
	})
}

// postDecode sends payloads to a codec server's /decode in the default
// namespace and returns what it answers.
func postDecode(t *testing.T, url, token string, payloads []*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(testContext(t, time.Minute), http.MethodPost, url+"/decode", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/decode: %d %v (%d bytes of answer)", resp.StatusCode, err, len(b))
	}
	var out commonpb.Payloads
	if err := protojson.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.GetPayloads()
}

func mustDecodeAll(t *testing.T, c *codec.Codec, payloads []*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	out, err := c.Decode(payloads)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sum adds up the call counts of every operation.
func sum(counts map[string]int64) int64 {
	var n int64
	for _, c := range counts {
		n += c
	}
	return n
}
