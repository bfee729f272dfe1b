package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/maddr-project/maddr/httpauth"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/server"
	"github.com/maddr-project/maddr/version"
)

func init() {
	register("serve", "serve a model over HTTP: JSON scoring API, /healthz, /metrics and a web page", runServe)
}

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	modelPath := fs.String("model", "", "model file or run directory (required)")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (use :8080 to accept other machines)")
	sf := addScoreFlags(fs)
	d := server.DefaultConfig()
	workers := fs.Int("workers", d.Workers, "uploads scored in parallel (forward passes take turns)")
	queue := fs.Int("queue", d.QueueSize, "uploads that may wait for a worker; more get 503")
	maxMB := fs.Int64("max-body-mb", d.MaxBodyBytes>>20, "largest upload in MiB (413 beyond)")
	maxMpx := fs.Int64("max-mpixels", d.MaxPixels>>20, "most decoded pixels per upload, in Mi pixels (413 beyond)")
	maxSlices := fs.Int("max-slices", d.MaxSlices, "most 2-D images per upload")
	timeout := fs.Duration("timeout", d.Timeout, "deadline of one request, waiting included")
	threads := fs.Int("threads", 0, "libtorch threads (0: all cores)")
	precision := precisionFlag(fs)
	basicFile := fs.String("auth-basic-file", "", "require HTTP Basic auth with the user:password in this file (else $MADDR_SERVE_BASIC)")
	tokenFile := fs.String("auth-token-file", "", "require this file's bearer token (else $MADDR_SERVE_TOKEN)")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this PEM certificate (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	insecure := fs.Bool("insecure", false, "allow a non-loopback address without authentication")
	if err := parseConfigured(fs, args, stdout); err != nil {
		return err
	}
	if *modelPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maddr serve: --model is required (and positional arguments are not accepted)")
		return errUsage
	}
	creds, err := httpauth.Read(httpauth.Sources{BasicFile: *basicFile, TokenFile: *tokenFile, EnvPrefix: "MADDR_SERVE"})
	if err != nil {
		return fmt.Errorf("serve credentials: %w", err)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if creds.Empty() && !*insecure && !loopbackAddress(*addr) {
		return fmt.Errorf("%s is reachable from other machines and no authentication is configured: "+
			"set --auth-basic-file/--auth-token-file (or $MADDR_SERVE_BASIC/$MADDR_SERVE_TOKEN), or pass --insecure "+
			"if something in front of maddr authenticates", *addr)
	}
	setThreads(*threads)
	path := resolveModel(*modelPath)
	m, sc, digest, err := openScorer(path, *precision, sf, stderr)
	if err != nil {
		return err
	}
	cfg := server.Config{MaxBodyBytes: *maxMB << 20, MaxPixels: *maxMpx << 20, MaxSlices: *maxSlices, Workers: *workers,
		QueueSize: *queue, Timeout: *timeout, HU: *sf.hu, Auth: creds, TLSCert: *tlsCert, TLSKey: *tlsKey,
		Log: slog.New(slog.NewJSONHandler(stderr, nil))}
	srv := server.New(sc, server.Info{ModelPath: path, ModelSHA256: digest, Version: version.String()}, cfg)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		srv.Close()
		return err
	}
	if !sc.CanRoute() {
		fmt.Fprintf(stderr, "serve: this model has no organ/modality heads and several groups: requests must name ?group= (one of %v)\n", sc.Groups())
	}
	if len(m.Manifest.Thresholds) == 0 {
		fmt.Fprintf(stderr, "serve: %s has no thresholds, so decisions will be %q: run 'maddr eval --model %s' first\n", path, score.Unknown, *modelPath)
	}
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "serving %s (%s, %s scoring) on %s://%s/ (%s, %s auth); Ctrl-C stops\n", path, m.Manifest.Model, sc.Precision(), scheme, ln.Addr(), cfg, creds.Kind())
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	start := time.Now()
	err = server.Serve(ctx, ln, srv)
	fmt.Fprintf(stdout, "stopped after %s\n", time.Since(start).Round(time.Second))
	return err
}

// loopbackAddress tells whether a listen address only accepts connections
// from this machine (a loopback IP or "localhost"); an empty host or any
// other name counts as reachable.
func loopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
