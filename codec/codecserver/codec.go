package codecserver

import (
	"context"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/envelope"
)

// Codec is what the server needs of a payload codec: decode and encode
// on behalf of a request in a namespace. ctx is the request's: it is done
// when the client has gone or the write deadline has passed, and a Codec
// should stop working then. Use [KMSCodec] for a kmscodec codec.Codec and
// [PayloadCodec] for any other converter.PayloadCodec, such as a chain
// that also decodes a legacy format while migrating.
type Codec interface {
	Decode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error)
	Encode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error)
}

// KMSCallCounter is implemented by a Codec that can tell, before making
// any, how many KMS calls decoding payloads would make. The server uses
// it to enforce Options.MaxKMSCallsPerRequest and the per-caller KMS rate;
// a Codec without it is not limited by them.
type KMSCallCounter interface {
	KMSCallsToDecode(namespace string, payloads []*commonpb.Payload) (int, error)
}

// KMSCodec serves a kmscodec codec.Codec. Before any KMS call it refuses
// a payload bound to another namespace than the request's, and one bound
// to none unless AllowUnboundPayloads; without that check a caller
// allowed one namespace would decrypt any namespace's payloads it got
// hold of, since they share the server's KMS access.
type KMSCodec struct {
	// Codec decrypts and encrypts. Required.
	Codec *codec.Codec
	// AllowUnboundPayloads lets Decode decrypt payloads whose encryption
	// context names no namespace. They cannot be checked against the
	// caller's namespace, so by default (false) they are refused.
	AllowUnboundPayloads bool
}

var (
	_ Codec          = KMSCodec{}
	_ KMSCallCounter = KMSCodec{}
)

// KMSCallsToDecode implements KMSCallCounter: the distinct data keys of
// payloads not in the decryption cache, after the checks Decode makes
// before any KMS call.
func (k KMSCodec) KMSCallsToDecode(namespace string, payloads []*commonpb.Payload) (int, error) {
	if _, err := k.checkBinding(namespace, payloads); err != nil {
		return 0, err
	}
	return k.Codec.DataKeysToFetch(payloads)
}

// Decode decrypts payloads for a request in namespace. It decodes them a
// data key at a time, so that it stops, between KMS calls, once ctx is
// done.
func (k KMSCodec) Decode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	groups, err := k.checkBinding(namespace, payloads)
	if err != nil {
		return nil, err
	}
	if _, err := k.Codec.DataKeysToFetch(payloads); err != nil {
		return nil, err // refused as a whole, before any KMS call
	}
	out := make([]*commonpb.Payload, len(payloads))
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch := make([]*commonpb.Payload, len(g))
		for j, i := range g {
			batch[j] = payloads[i]
		}
		decoded, err := k.Codec.Decode(batch)
		if err != nil {
			return nil, err
		}
		for j, i := range g {
			out[i] = decoded[j]
		}
	}
	return out, nil
}

// Encode encrypts payloads under data keys bound to namespace.
func (k KMSCodec) Encode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return k.Codec.WithNamespace(namespace).Encode(payloads)
}

// checkBinding refuses payloads of another namespace, or of none, and
// groups the indexes of the payloads by data key (unencrypted payloads
// form one group), in order of first appearance.
func (k KMSCodec) checkBinding(namespace string, payloads []*commonpb.Payload) ([][]int, error) {
	byKey := map[string]int{}
	var groups [][]int
	for i, p := range payloads {
		id := "" // the group of payloads that pass through
		env, err := envelope.Parse(p)
		switch {
		case errors.Is(err, envelope.ErrNotEncrypted):
		case err != nil:
			return nil, fmt.Errorf("payload %d: %w", i+1, err)
		default:
			ctx, err := env.EncryptionContext()
			if err != nil {
				return nil, fmt.Errorf("payload %d: %w", i+1, err)
			}
			bound, named := ctx[codec.NamespaceContextKey]
			switch {
			case !named && !k.AllowUnboundPayloads:
				return nil, fmt.Errorf("payload %d: %w", i+1, errUnboundPayload)
			case named && bound != namespace:
				return nil, fmt.Errorf("payload %d: %w: it names %q, the request %q", i+1, codec.ErrNamespaceMismatch, bound, namespace)
			}
			id = "k" + env.KeyIdentity()
		}
		g, ok := byKey[id]
		if !ok {
			g = len(groups)
			byKey[id] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups, nil
}

// PayloadCodec serves any converter.PayloadCodec. Encode binds payloads
// to the request's namespace when pc implements
// converter.PayloadCodecWithSerializationContext, as the SDK would for a
// workflow in that namespace. It makes no namespace check of its own on
// Decode, and cannot say what a request will cost in KMS calls.
func PayloadCodec(pc converter.PayloadCodec) Codec { return payloadCodec{pc} }

type payloadCodec struct{ pc converter.PayloadCodec }

func (c payloadCodec) Decode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.inNamespace(namespace).Decode(payloads)
}

func (c payloadCodec) Encode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.inNamespace(namespace).Encode(payloads)
}

func (c payloadCodec) inNamespace(namespace string) converter.PayloadCodec {
	if sc, ok := c.pc.(converter.PayloadCodecWithSerializationContext); ok {
		return sc.WithSerializationContext(converter.WorkflowSerializationContext{Namespace: namespace})
	}
	return c.pc
}
