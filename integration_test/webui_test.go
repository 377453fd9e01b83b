package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/temporal-kms/kmscodec/envelope"
	"github.com/temporal-kms/kmscodec/integration_test/harness"
)

// chromiumEnv names the environment variable that gives the browser for
// the Web UI test: a path, or a command name looked up in PATH.
const chromiumEnv = "CHROMIUM"

// screenshotPath is where the Web UI test saves what the page showed
// (testoutput/ is git-ignored).
const screenshotPath = "testoutput/webui-decoded.png"

// chromiumPath returns the headless browser to drive. It fails the test,
// never skips it, when there is none: a CI run without a browser must not
// pass.
func chromiumPath(t *testing.T) string {
	t.Helper()
	name := os.Getenv(chromiumEnv)
	if name == "" {
		name = "chromium"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("Chromium not found (%v): run `make chromium` in the repository root (Debian's chromium package), or set %s to the browser", err, chromiumEnv)
	}
	return p
}

// startBrowser starts headless Chromium with a fresh profile and returns a
// context for its first tab. The browser is stopped when the test ends,
// or after limit. Its output and chromedp's messages are kept out of the
// test log unless the test fails.
func startBrowser(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	out := harness.NewTailBuffer(8 << 10)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1400, 1000),
		chromedp.CombinedOutput(out),
	)
	ctx, cancelLimit := context.WithTimeout(context.Background(), limit)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	logf := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser to exit
		cancelLimit()
		if t.Failed() {
			t.Logf("Chromium output (tail):\n%s", out.String())
		}
	})
	// The first action starts the browser.
	if err := chromedp.Do(browserCtx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v\n%s", err, out.String())
	}
	return browserCtx
}

// newTab opens a tab in the browser of ctx, closed when the test ends.
func newTab(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return tab
}

// pageText returns the visible text of the tab's page.
func pageText(t *testing.T, tab context.Context) string {
	t.Helper()
	text, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		t.Fatalf("read the page text: %v", err)
	}
	return text
}

// waitForText waits, within limit, until the tab's page shows every one
// of want. It reads the page every 100ms rather than running one long
// in-page poll, which fails when the page's script context is replaced
// (as it is while the Web UI loads).
func waitForText(t *testing.T, tab context.Context, limit time.Duration, want ...string) {
	t.Helper()
	eventually(t, limit, fmt.Sprintf("the page shows %q", want), func() error {
		ctx, cancel := context.WithTimeout(tab, 5*time.Second)
		defer cancel()
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		if err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(text, w) {
				return fmt.Errorf("%q is not on the page; page text:\n%s", w, text)
			}
		}
		return nil
	})
}

// fetchResult is what the in-page fetch of codecFetchJS saw.
type fetchResult struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
	// Data holds each returned payload's data, base64-decoded.
	Data []string `json:"data"`
}

// codecFetchJS is a script that POSTs body to url from the page, as the
// Web UI does: a JSON body and an X-Namespace header, both of which make
// the browser send a CORS preflight first.
func codecFetchJS(url, namespace, body string) string {
	return fmt.Sprintf(`(async () => {
  try {
    const r = await fetch(%s, {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-Namespace": %s},
      body: %s,
    });
    const out = {status: r.status, data: []};
    if (r.ok) {
      const j = await r.json();
      out.data = (j.payloads || []).map(p => atob(p.data || ""));
    }
    return out;
  } catch (e) {
    return {status: 0, error: String(e)};
  }
})()`, strconv.Quote(url), strconv.Quote(namespace), strconv.Quote(body))
}

func pageFetch(t *testing.T, tab context.Context, script string) fetchResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.Evaluate[fetchResult](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch from the page: %v", err)
	}
	return res
}

// TestWebUIShowsDecodedPayloads runs the real Temporal Web UI (the one the
// dev server serves) with `kmscodec serve` as its codec endpoint, and
// drives it in headless Chromium: the workflow page shows the input and
// result decoded, where without the codec server it shows ciphertext; the
// codec server's CORS lets the UI's origin call it from the browser and no
// other origin.
func TestWebUIShowsDecodedPayloads(t *testing.T) {
	chromiumPath(t) // fail early, before starting servers, if it is missing
	k := harness.StartKMS(t)
	keyARN := k.MustCreateKey(t, "webui")

	// The UI is configured with the codec server's URL at start, and the
	// codec server with the UI's origin: so the UI's port comes first.
	uiPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	uiOrigin := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(uiPort))
	// The dev server's UI sends no token, so this codec server runs
	// without authentication, as on a developer's machine.
	codecServer := startKMSCodecServer(t, k, keyARN, nil, "--insecure-no-auth", "--cors-origin", uiOrigin)
	ui := harness.StartTemporal(t, harness.TemporalOptions{
		UI:        true,
		UIPort:    uiPort,
		ExtraArgs: []string{"--ui-codec-endpoint", codecServer.URL},
	})
	if ui.UIAddress != uiOrigin {
		t.Fatalf("UI at %s, want %s", ui.UIAddress, uiOrigin)
	}
	wf := runOrderWorkflow(t, ui, k, keyARN, "webui")
	pageURL := fmt.Sprintf("%s/namespaces/default/workflows/%s/%s/history", ui.UIAddress, wf.ID, wf.RunID)

	// What the server stores for the input, as the UI would send it to
	// the codec server.
	inputBody := storedInputJSON(t, ui, wf)
	// The UI shows stored payloads as JSON with base64 metadata.
	encryptedMarker := base64.StdEncoding.EncodeToString([]byte(envelope.EncodingEncrypted))
	const codecDown = "Codec Server could not connect"

	t.Run("CORS preflight", func(t *testing.T) {
		requested := []string{"Authorization", "Authorization-Extras", "Content-Type", "X-Namespace"}
		resp := preflight(t, codecServer.URL+"/decode", uiOrigin, requested)
		if resp.StatusCode/100 != 2 {
			t.Errorf("preflight from the UI origin: %s", resp.Status)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != uiOrigin {
			t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, uiOrigin)
		}
		allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		for _, h := range requested {
			if !slices.Contains(strings.Split(strings.ReplaceAll(allowed, " ", ""), ","), strings.ToLower(h)) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, h)
			}
		}
		if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, http.MethodPost) {
			t.Errorf("Access-Control-Allow-Methods = %q, want POST", m)
		}

		other := "http://127.0.0.1:1"
		resp = preflight(t, codecServer.URL+"/decode", other, requested)
		for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods", "Access-Control-Allow-Credentials"} {
			if v := resp.Header.Get(h); v != "" {
				t.Errorf("preflight from %s: %s = %q, want none", other, h, v)
			}
		}
	})

	browser := startBrowser(t, 4*time.Minute)

	t.Run("workflow page shows decoded input and result", func(t *testing.T) {
		before := len(decodeStatuses(codecServer.Process.Log()))
		tab := newTab(t, browser)
		if err := chromedp.Do(tab, chromedp.Navigate(pageURL)); err != nil {
			t.Fatalf("open %s: %v", pageURL, err)
		}
		// The header shows input and result; the event table, loaded
		// separately, shows the result again.
		waitForText(t, tab, time.Minute, wf.Input, wf.Result, "Workflow Execution Completed")
		saveScreenshot(t, tab)
		text := pageText(t, tab)
		for _, bad := range []string{codecDown, encryptedMarker, envelope.EncodingEncrypted, envelope.Format} {
			if strings.Contains(text, bad) {
				t.Errorf("the page shows %q:\n%s", bad, text)
			}
		}
		// The UI asked the codec server, and the server decoded.
		statuses := decodeStatuses(codecServer.Process.Log())[before:]
		if len(statuses) == 0 || slices.ContainsFunc(statuses, func(s string) bool { return s != "200" }) {
			t.Errorf("codec server answered the UI's decode requests with %v, want only 200s:\n%s", statuses, codecServer.Process.Log())
		}
	})

	t.Run("without the codec server the page shows ciphertext", func(t *testing.T) {
		// The same page, with the browser kept from reaching the codec
		// server: this is what the assertions above tell apart.
		tab := newTab(t, browser)
		block := network.SetBlockedURLsParams{URLPatterns: []*network.BlockPattern{{URLPattern: codecServer.URL + "/*", Block: true}}}
		if _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Call(tab, network.SetBlockedURLs, block); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(tab, chromedp.Navigate(pageURL)); err != nil {
			t.Fatalf("open %s: %v", pageURL, err)
		}
		waitForText(t, tab, time.Minute, codecDown, encryptedMarker)
		if text := pageText(t, tab); containsAny(text, wf.Input, wf.Result) {
			t.Errorf("plaintext on the page without the codec server:\n%s", text)
		}
	})

	t.Run("the UI origin may call the codec server from the browser", func(t *testing.T) {
		tab := newTab(t, browser)
		if err := chromedp.Do(tab, chromedp.Navigate(ui.UIAddress+"/namespaces/default/workflows")); err != nil {
			t.Fatal(err)
		}
		res := pageFetch(t, tab, codecFetchJS(codecServer.URL+"/decode", "default", inputBody))
		if res.Error != "" || res.Status != http.StatusOK {
			t.Fatalf("fetch from %s: status %d, error %q", uiOrigin, res.Status, res.Error)
		}
		if want := strconv.Quote(wf.Input); !slices.Equal(res.Data, []string{want}) {
			t.Errorf("decoded %q, want [%s]", res.Data, want)
		}
	})

	t.Run("another origin may not", func(t *testing.T) {
		// A page on 127.0.0.1 too, on another port: another origin.
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<!doctype html><title>another origin</title><p>another origin</p>")
		}))
		t.Cleanup(other.Close)
		tab := newTab(t, browser)
		if err := chromedp.Do(tab, chromedp.Navigate(other.URL)); err != nil {
			t.Fatal(err)
		}
		before := len(decodeStatuses(codecServer.Process.Log()))
		res := pageFetch(t, tab, codecFetchJS(codecServer.URL+"/decode", "default", inputBody))
		if res.Status != 0 || !strings.HasPrefix(res.Error, "TypeError") {
			t.Fatalf("fetch from %s: status %d, error %q; want a TypeError from CORS", other.URL, res.Status, res.Error)
		}
		if len(res.Data) > 0 {
			t.Errorf("the page got decoded data: %q", res.Data)
		}
		// The preflight failed, so the browser never sent the request.
		if after := decodeStatuses(codecServer.Process.Log())[before:]; len(after) > 0 {
			t.Errorf("the codec server handled decode requests from another origin: %v", after)
		}
		t.Logf("fetch from %s: %s", other.URL, res.Error)
	})
}

// storedInputJSON returns the workflow's input as the server stores it,
// as a {"payloads": [...]} body for /decode.
func storedInputJSON(t *testing.T, s *harness.Temporal, wf decodedWorkflow) string {
	t.Helper()
	raw := s.MustDial(t, client.Options{})
	h := rawHistory(t, raw, wf.ID, wf.RunID)
	for _, e := range h.GetEvents() {
		if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED {
			in := e.GetWorkflowExecutionStartedEventAttributes().GetInput()
			requireAllEncrypted(t, findPayloads(in, "input"))
			b, err := protojson.Marshal(&commonpb.Payloads{Payloads: in.GetPayloads()})
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatal("no WorkflowExecutionStarted event")
	return ""
}

// preflight sends the CORS preflight a browser sends before the UI's
// decode request.
func preflight(t *testing.T, url, origin string, headers []string) *http.Response {
	t.Helper()
	ctx := testContext(t, 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	req.Header.Set("Access-Control-Request-Headers", strings.ToLower(strings.Join(headers, ",")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// saveScreenshot saves the tab's whole page to screenshotPath and logs
// where.
func saveScreenshot(t *testing.T, tab context.Context) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(screenshotPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(screenshotPath)
	t.Logf("screenshot of the decoded workflow page: %s", abs)
}
