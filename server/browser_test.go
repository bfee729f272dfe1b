package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/score"
)

// chromium finds a Chromium or Chrome binary: $MADDR_CHROMIUM, else the
// usual names on PATH (Debian's package is "chromium").
func chromium() string {
	if p := os.Getenv("MADDR_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestPageInChromium drives the web page in headless Chromium: it uploads
// an image through the page's file input, waits for the verdict and checks
// that the page shows what the API answers. The screenshot is kept in the
// test's temporary folder, or written to $MADDR_SCREENSHOT. With
// $MADDR_SCREENSHOT_MODEL and $MADDR_SCREENSHOT_IMAGE it shows that model
// and image instead (how docs/img/serve.png is made).
func TestPageInChromium(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no Chromium found (apt-get install chromium, or set MADDR_CHROMIUM): the browser test is skipped")
	}
	sc, mod := scorer(t)
	imagePath := filepath.Join(t.TempDir(), "chest-xray.png")
	if err := os.WriteFile(imagePath, samplePNG(t, mod, "chest-xray", dataset.Abnormal), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := os.Getenv("MADDR_SCREENSHOT_MODEL"); p != "" {
		m, err := modelfile.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if sc, err = score.New(m, score.DefaultOptions()); err != nil {
			t.Fatal(err)
		}
		if img := os.Getenv("MADDR_SCREENSHOT_IMAGE"); img != "" {
			imagePath = img
		}
	}
	digest, _ := modelfile.Digest(sc.Model().Path)
	s := New(sc, Info{ModelPath: sc.Model().Path, ModelSHA256: digest}, Config{})
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1120, 720),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	err := chromedp.Do(ctx,
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(css("#drop")),
		chromedp.WaitReady(css("#group option:nth-child(2)")), // the model description has loaded
		chromedp.SetUploadFiles(css("#file"), []string{imagePath}),
		chromedp.WaitReady(css(`body[data-state="done"], body[data-state="error"]`)),
	)
	if err != nil {
		t.Fatalf("driving the page: %v", err)
	}
	text := func(sel string) string {
		v, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	if e, err := chromedp.Run(ctx, chromedp.TextContent(css("#error"))); err != nil || strings.TrimSpace(e) != "" {
		t.Fatalf("the page shows an error: %q (%v)", e, err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css("#result"))); err != nil {
		t.Fatal(err)
	}
	decision, group, organ, modality := text("#decision"), text("#group-used"), text("#organ"), text("#modality")
	scoreText, raw, status := text("#score"), text("#raw"), text("#status")
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("page: %s, score %s, raw %s, group %s, organ %s, modality %s; %s", decision, scoreText, raw, group, organ, modality, status)

	// The page must show what the library computes for the same file.
	data, err := os.ReadFile(imagePath)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := decode(data, filepath.Base(imagePath), false, 1<<30, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want, err := sc.Score(context.Background(), []score.Input{{Image: imgs[0], Path: imagePath}}, score.Request{})
	if err != nil {
		t.Fatal(err)
	}
	w := want[0]
	words := map[string]string{score.Normal: "NORMAL", score.Abnormal: "ABNORMAL", score.OutOfScope: "OUT OF SCOPE", score.Unknown: "NO THRESHOLD"}
	if decision != words[w.Decision] {
		t.Errorf("page says %q, the library %q", decision, w.Decision)
	}
	if !strings.HasPrefix(group, w.Group+" ") {
		t.Errorf("page shows group %q, the library %q", group, w.Group)
	}
	if !strings.HasPrefix(organ, w.Organ) || !strings.HasPrefix(modality, w.Modality) {
		t.Errorf("page shows %q / %q, the library %s / %s", organ, modality, w.Organ, w.Modality)
	}
	if w.Normalised != nil && scoreText != fmt.Sprintf("%.3f", *w.Normalised) {
		t.Errorf("page shows score %q, the library %.3f", scoreText, *w.Normalised)
	}
	out := filepath.Join(t.TempDir(), "serve.png")
	if p := os.Getenv("MADDR_SCREENSHOT"); p != "" {
		out = p
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot (%d KB): %s", len(shot)>>10, out)
}
