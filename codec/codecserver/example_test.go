package codecserver_test

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/codec/codecserver"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// chain is a PayloadCodec made of others, applied in order on encode and
// in reverse on decode, as the Temporal SDK applies a data converter's
// codecs: here, payloads compressed by an older worker and then
// encrypted.
type chain []converter.PayloadCodec

func (c chain) Encode(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	var err error
	for _, codec := range c {
		if ps, err = codec.Encode(ps); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

func (c chain) Decode(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	var err error
	for i := len(c) - 1; i >= 0; i-- {
		if ps, err = c[i].Decode(ps); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// Mount the codec server in an application's own mux, beside a second
// codec server for payloads written while migrating: compressed, then
// encrypted. The Web UI and CLI are given the codec endpoint
// https://codec.example.com/kms (or /migrating).
func Example() {
	kms := kmstest.New() // in production: kms.NewFromConfig(cfg) of aws-sdk-go-v2
	keyARN := kms.CreateKey()
	c, err := codec.New(codec.Options{KMS: kms, KeyID: keyARN})
	if err != nil {
		log.Fatal(err)
	}
	const token = "0123456789abcdef0123456789abcdef" // in production: from a secret store
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	current, err := codecserver.New(codecserver.Options{
		Codec:            codecserver.KMSCodec{Codec: c},
		StaticToken:      token,
		DefaultNamespace: "default",
		Logger:           quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	migrating, err := codecserver.New(codecserver.Options{
		Codec:            codecserver.PayloadCodec(chain{converter.NewZlibCodec(converter.ZlibCodecOptions{AlwaysEncode: true}), c}),
		StaticToken:      token,
		DefaultNamespace: "default",
		Logger:           quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/kms/", http.StripPrefix("/kms", current))
	mux.Handle("/migrating/", http.StripPrefix("/migrating", migrating))
	srv := httptest.NewServer(mux) // in production: an http.Server with TLS and timeouts
	defer srv.Close()

	// What a worker in namespace default wrote, and a compressed one.
	plain := []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"hello"`)}}
	encrypted, _ := c.WithNamespace("default").Encode(plain)
	compressed, _ := chain{converter.NewZlibCodec(converter.ZlibCodecOptions{AlwaysEncode: true}), c.WithNamespace("default")}.Encode(plain)

	for _, call := range []struct {
		path     string
		payloads []*commonpb.Payload
	}{
		{"/kms/default/decode", encrypted},
		{"/migrating/default/decode", compressed},
	} {
		body, _ := protojson.Marshal(&commonpb.Payloads{Payloads: call.payloads})
		req, _ := http.NewRequest(http.MethodPost, srv.URL+call.path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		var out commonpb.Payloads
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := protojson.Unmarshal(b, &out); err != nil {
			log.Fatal(err)
		}
		fmt.Println(call.path, resp.StatusCode, string(out.Payloads[0].Data))
	}
	// Output:
	// /kms/default/decode 200 "hello"
	// /migrating/default/decode 200 "hello"
}
