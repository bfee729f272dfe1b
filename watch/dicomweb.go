package watch

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/maddr-project/maddr/archive"
	"github.com/maddr-project/maddr/dicomresult"
)

// dicomwebState is the state file of the DICOMweb watcher.
type dicomwebState struct {
	Server string `json:"server"`
	// Done are the series (by Series Instance UID) already scored, with the
	// instance count they had; a series gaining instances later is not
	// scored again (its new instances are reported in the log).
	Done map[string]int `json:"done"`
	// Seen holds the instance counts of series not yet stable, from the
	// last poll.
	Seen map[string]int `json:"seen"`
}

// qidoPage is the page size of QIDO searches.
const qidoPage = 500

// DICOMweb polls a DICOMweb service with QIDO-RS.
type DICOMweb struct {
	*core
	client *archive.DICOMweb
	state  dicomwebState
}

// NewDICOMweb prepares a watcher of client's service.
func NewDICOMweb(client *archive.DICOMweb, cfg Config) (*DICOMweb, error) {
	c, err := newCore(cfg)
	if err != nil {
		return nil, err
	}
	return &DICOMweb{core: c, client: client}, nil
}

// Stats returns what the watcher did so far.
func (w *DICOMweb) Stats() Stats { return w.stats }

// Run polls until ctx ends (or, with Once, after one pass over the
// archive, which then scores every series found, stable or not).
func (w *DICOMweb) Run(ctx context.Context) error {
	found, err := loadState(w.cfg.StateFile, &w.state)
	if err != nil {
		return err
	}
	server := w.client.Root()
	if found && w.state.Server != server {
		return fmt.Errorf("state file %s belongs to %s, not %s: use another state file", w.cfg.StateFile, w.state.Server, server)
	}
	w.state.Server = server
	if w.state.Done == nil {
		w.state.Done = map[string]int{}
	}
	if w.state.Seen == nil {
		w.state.Seen = map[string]int{}
	}
	if !found && w.cfg.FromNow {
		series, err := w.search(ctx)
		if err != nil {
			return err
		}
		for _, s := range series {
			w.state.Done[s.String(archive.TagSeriesInstanceUID)] = count(s)
		}
	}
	if err := saveState(w.cfg.StateFile, w.state); err != nil {
		return err
	}
	w.log.Info("watching DICOMweb", "server", w.client.Server(), "done_series", len(w.state.Done), "once", w.cfg.Once)
	for {
		if err := w.poll(ctx); err != nil {
			return err
		}
		if w.cfg.Once {
			w.log.Info("nothing pending", "units", w.stats.Units, "failed", w.stats.Failed)
			return nil
		}
		if err := sleep(ctx, w.cfg.Poll); err != nil {
			return nil
		}
	}
}

func (w *DICOMweb) search(ctx context.Context) ([]archive.Dataset, error) {
	q := url.Values{"includefield": {archive.TagSeriesInstances, archive.TagSeriesDescription, archive.TagModality}}
	series, err := w.client.SearchAll(ctx, "series", q, qidoPage)
	if err != nil {
		return nil, fmt.Errorf("QIDO series search: %w", err)
	}
	return series, nil
}

func count(s archive.Dataset) int {
	var n int
	fmt.Sscan(s.String(archive.TagSeriesInstances), &n)
	return n
}

func (w *DICOMweb) poll(ctx context.Context) error {
	series, err := w.search(ctx)
	if err != nil {
		return err
	}
	sort.Slice(series, func(i, j int) bool {
		return series[i].String(archive.TagSeriesInstanceUID) < series[j].String(archive.TagSeriesInstanceUID)
	})
	for _, s := range series {
		uid, study := s.String(archive.TagSeriesInstanceUID), s.String(archive.TagStudyInstanceUID)
		n := count(s)
		if done, ok := w.state.Done[uid]; ok {
			if n > done {
				w.log.Warn("series gained instances after it was scored; not scored again",
					"series", uid, "scored", done, "now", n)
				w.state.Done[uid] = n
				if err := saveState(w.cfg.StateFile, w.state); err != nil {
					return err
				}
			}
			continue
		}
		if dicomresult.IsOwnOutput("", "", s.String(archive.TagSeriesDescription)) {
			w.stats.Own++
			continue
		}
		if prev, ok := w.state.Seen[uid]; !w.cfg.Once && (!ok || prev != n) {
			w.state.Seen[uid] = n // wait for the count to hold still
			continue
		}
		if err := w.series(ctx, archive.SeriesRef{Study: study, Series: uid}, s.String(archive.TagModality)); err != nil {
			return fmt.Errorf("series %s: %w", uid, err)
		}
		w.state.Done[uid] = n
		delete(w.state.Seen, uid)
		if err := saveState(w.cfg.StateFile, w.state); err != nil {
			return err
		}
	}
	return saveState(w.cfg.StateFile, w.state)
}

func (w *DICOMweb) series(ctx context.Context, ref archive.SeriesRef, modality string) error {
	files, err := w.client.Retrieve(ctx, ref.Path())
	if err != nil {
		return err
	}
	var insts []instance
	for i, f := range files {
		where := fmt.Sprintf("%s/part/%d", ref.Path(), i+1)
		if id, err := readIdentity(f); err == nil {
			if id.own() {
				w.stats.Own++
				return nil
			}
			where = ref.Path() + "/instances/" + id.SOPInstanceUID
		}
		insts = append(insts, instance{where: where, data: f})
	}
	sort.Slice(insts, func(i, j int) bool { return insts[i].where < insts[j].where })
	put := func(ctx context.Context, objs [][]byte) error {
		if err := w.client.Store(ctx, objs); err != nil {
			return fmt.Errorf("storing results: %w", err)
		}
		return nil
	}
	if SingleImage(modality) {
		for _, in := range insts {
			start := time.Now()
			o, err := w.process(ctx, in.where, []instance{in}, false, put, nil)
			if err != nil {
				return err
			}
			w.logOutcome(o, time.Since(start))
		}
		return nil
	}
	start := time.Now()
	o, err := w.process(ctx, ref.Path(), insts, len(insts) > 1, put, nil)
	if err != nil {
		return err
	}
	w.logOutcome(o, time.Since(start))
	return nil
}
