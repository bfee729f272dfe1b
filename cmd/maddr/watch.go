package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/maddr-project/maddr/archive"
	"github.com/maddr-project/maddr/dicomresult"
	"github.com/maddr-project/maddr/httpauth"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/version"
	"github.com/maddr-project/maddr/watch"
)

func init() {
	register("watch", "score what arrives in an Orthanc or DICOMweb archive and write the results back as DICOM", runWatch)
}

// archiveFlags are the connection settings of an archive client.
type archiveFlags struct {
	basicFile, tokenFile, caFile *string
	attempts                     *int
}

func addArchiveFlags(fs *flag.FlagSet) *archiveFlags {
	return &archiveFlags{
		basicFile: fs.String("archive-basic-file", "", "file holding user:password for the archive (else $MADDR_ARCHIVE_BASIC)"),
		tokenFile: fs.String("archive-token-file", "", "file holding a bearer token for the archive (else $MADDR_ARCHIVE_TOKEN)"),
		caFile:    fs.String("archive-ca", "", "PEM file of a CA to trust for https:// archives"),
		attempts:  fs.Int("archive-attempts", archive.DefaultAttempts, "tries per request on connection errors and 5xx, with doubling waits from 0.5 s"),
	}
}

func (f *archiveFlags) options(log *slog.Logger) (archive.Options, error) {
	creds, err := httpauth.Read(httpauth.Sources{BasicFile: *f.basicFile, TokenFile: *f.tokenFile, EnvPrefix: "MADDR_ARCHIVE"})
	if err != nil {
		return archive.Options{}, fmt.Errorf("archive credentials: %w", err)
	}
	return archive.Options{Credentials: creds, CAFile: *f.caFile, Attempts: *f.attempts, Log: log}, nil
}

func runWatch(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maddr watch --model M (--orthanc URL | --dicomweb URL) [flags]\n\n"+
			"Scores new images in the archive (single images on arrival, CT/MR series once stable) and stores a\n"+
			"Secondary Capture and a Structured Report per scored unit in new series of the same study.\n\nflags:")
		fs.PrintDefaults()
	}
	modelPath := fs.String("model", "", "model file or run directory (required)")
	orthancURL := fs.String("orthanc", "", "Orthanc REST root, e.g. http://orthanc:8042 (follows /changes)")
	dicomwebURL := fs.String("dicomweb", "", "DICOMweb root, e.g. http://pacs/dicom-web (polls QIDO-RS; WADO-RS/STOW-RS only)")
	state := fs.String("state", "maddr-watch-state.json", "file keeping progress between runs (replaced atomically)")
	once := fs.Bool("once", false, "process what is pending and exit (for cron and Kubernetes CronJobs)")
	fromNow := fs.Bool("from-now", false, "without a state file, skip what the archive already holds")
	poll := fs.Duration("poll", 5*time.Second, "wait between polls when nothing is pending")
	metadata := fs.String("metadata", "MaddrResult", "Orthanc user metadata receiving the JSON result on each scored instance (declared in UserMetadata; empty: none)")
	attachment := fs.String("attachment", "", "Orthanc attachment receiving the JSON result too (declared in UserContentType; empty: none)")
	group := fs.String("group", "", "judge every image against this group's threshold instead of routing by the heads")
	af := addArchiveFlags(fs)
	sf := addScoreFlags(fs)
	threads := fs.Int("threads", 0, "libtorch threads (0: all cores)")
	precision := precisionFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *modelPath == "" || (*orthancURL == "") == (*dicomwebURL == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maddr watch: --model and exactly one of --orthanc or --dicomweb are required")
		return errUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	opts, err := af.options(log)
	if err != nil {
		return err
	}
	setThreads(*threads)
	m, sc, digest, err := openScorer(resolveModel(*modelPath), *precision, sf, stderr)
	if err != nil {
		return err
	}
	cfg := watch.Config{Scorer: sc, Request: score.Request{Group: *group}, StateFile: *state, Once: *once,
		FromNow: *fromNow, Poll: *poll, MetadataName: *metadata, AttachmentName: *attachment, Log: log,
		Model: dicomresult.ModelOf(m, digest, "maddr "+version.String())}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var run func(context.Context) error
	if *orthancURL != "" {
		client, err := archive.NewOrthanc(*orthancURL, opts)
		if err != nil {
			return err
		}
		w, err := watch.NewOrthanc(client, cfg)
		if err != nil {
			return err
		}
		run = w.Run
	} else {
		client, err := archive.NewDICOMweb(*dicomwebURL, opts)
		if err != nil {
			return err
		}
		w, err := watch.NewDICOMweb(client, cfg)
		if err != nil {
			return err
		}
		run = w.Run
	}
	if err := run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	return nil
}
