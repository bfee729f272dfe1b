package watch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/maddr-project/maddr/archive"
)

// orthancState is the state file of the Orthanc watcher.
type orthancState struct {
	// Server is the Orthanc address the sequence number belongs to.
	Server string `json:"server"`
	// Since: every change up to this sequence number is done.
	Since int64 `json:"since"`
}

// changesPerPage is how many changes are asked for at once.
const changesPerPage = 100

// Orthanc follows an Orthanc server's change log.
type Orthanc struct {
	*core
	client *archive.Orthanc
	state  orthancState
}

// NewOrthanc prepares a watcher of client's server.
func NewOrthanc(client *archive.Orthanc, cfg Config) (*Orthanc, error) {
	c, err := newCore(cfg)
	if err != nil {
		return nil, err
	}
	return &Orthanc{core: c, client: client}, nil
}

// Stats returns what the watcher did so far.
func (w *Orthanc) Stats() Stats { return w.stats }

// Run processes changes until ctx ends (or, with Once, until none is
// pending). It returns the first error it cannot get past, such as the
// server staying unreachable after the client's retries; progress up to the
// last finished change is saved, so a restart continues from there.
func (w *Orthanc) Run(ctx context.Context) error {
	found, err := loadState(w.cfg.StateFile, &w.state)
	if err != nil {
		return err
	}
	server := w.client.Server()
	switch {
	case found && w.state.Server != server:
		return fmt.Errorf("state file %s belongs to Orthanc %s, not %s: use another state file", w.cfg.StateFile, w.state.Server, server)
	case !found:
		w.state = orthancState{Server: server}
		if w.cfg.FromNow {
			last, err := w.client.LastChange(ctx)
			if err != nil {
				return err
			}
			w.state.Since = last
		}
		if err := saveState(w.cfg.StateFile, w.state); err != nil {
			return err
		}
	}
	w.log.Info("watching Orthanc", "server", server, "since", w.state.Since, "once", w.cfg.Once)
	for {
		page, err := w.client.Changes(ctx, w.state.Since, changesPerPage)
		if err != nil {
			return fmt.Errorf("reading Orthanc changes after %d: %w", w.state.Since, err)
		}
		for _, c := range page.Changes {
			before := w.stats.Units
			if err := w.handle(ctx, c); err != nil {
				return fmt.Errorf("change %d (%s %s): %w", c.Seq, c.ChangeType, c.Path, err)
			}
			w.state.Since = c.Seq
			// Passing over a change again costs nothing, so the state is
			// saved only once a unit was written (and at the page's end).
			if w.stats.Units != before {
				if err := saveState(w.cfg.StateFile, w.state); err != nil {
					return err
				}
			}
		}
		w.state.Since = max(w.state.Since, page.Last)
		if err := saveState(w.cfg.StateFile, w.state); err != nil {
			return err
		}
		if page.Done {
			if w.cfg.Once {
				w.log.Info("nothing pending", "since", w.state.Since, "units", w.stats.Units, "failed", w.stats.Failed)
				return nil
			}
			if err := sleep(ctx, w.cfg.Poll); err != nil {
				return nil // stopped
			}
		}
	}
}

// handle acts on one change: NewInstance of a single-image modality and
// StableSeries of any other are scored; everything else is passed over.
func (w *Orthanc) handle(ctx context.Context, c archive.Change) error {
	switch c.ChangeType {
	case archive.NewInstance:
		return w.newInstance(ctx, c.ID)
	case archive.StableSeries:
		return w.stableSeries(ctx, c.ID)
	}
	return nil
}

func (w *Orthanc) newInstance(ctx context.Context, id string) error {
	tags, err := w.client.SimplifiedTags(ctx, id)
	if errors.Is(err, archive.ErrNotFound) {
		return nil // deleted since
	}
	if err != nil {
		return err
	}
	if isOwn(tags) {
		w.stats.Own++
		return nil
	}
	if !SingleImage(tags["Modality"]) {
		return nil // scored with its series once stable
	}
	inst, err := w.fetch(ctx, id)
	if err != nil {
		return err
	}
	return w.run(ctx, "instances/"+id, []instance{inst}, false)
}

func (w *Orthanc) stableSeries(ctx context.Context, id string) error {
	se, err := w.client.Series(ctx, id)
	if errors.Is(err, archive.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(se.Instances) == 0 {
		return nil
	}
	if SingleImage(se.MainDicomTags["Modality"]) {
		return nil // each instance was scored on arrival
	}
	tags, err := w.client.SimplifiedTags(ctx, se.Instances[0])
	if errors.Is(err, archive.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if isOwn(tags) {
		w.stats.Own++
		return nil
	}
	insts := make([]instance, 0, len(se.Instances))
	for _, iid := range se.Instances {
		inst, err := w.fetch(ctx, iid)
		if errors.Is(err, archive.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		insts = append(insts, inst)
	}
	if len(insts) == 0 {
		return nil
	}
	return w.run(ctx, "series/"+id, insts, len(insts) > 1)
}

func (w *Orthanc) fetch(ctx context.Context, id string) (instance, error) {
	data, err := w.client.InstanceFile(ctx, id)
	if err != nil {
		return instance{}, err
	}
	return instance{where: "instances/" + id, orthancID: id, data: data}, nil
}

func (w *Orthanc) run(ctx context.Context, key string, insts []instance, asSeries bool) error {
	start := time.Now()
	put := func(ctx context.Context, objs [][]byte) error {
		for _, o := range objs {
			if _, err := w.client.Store(ctx, o); err != nil {
				return fmt.Errorf("storing a result: %w", err)
			}
		}
		return nil
	}
	annotate := func(ctx context.Context, in instance, js []byte) error {
		if w.cfg.MetadataName != "" {
			if err := w.client.SetMetadata(ctx, in.orthancID, w.cfg.MetadataName, js); err != nil {
				return fmt.Errorf("result metadata %s: %w", w.cfg.MetadataName, err)
			}
		}
		if w.cfg.AttachmentName != "" {
			if err := w.client.PutAttachment(ctx, in.orthancID, w.cfg.AttachmentName, js, "application/json"); err != nil {
				return fmt.Errorf("result attachment %s: %w", w.cfg.AttachmentName, err)
			}
		}
		return nil
	}
	o, err := w.process(ctx, key, insts, asSeries, put, annotate)
	if err != nil {
		return err
	}
	w.logOutcome(o, time.Since(start))
	return nil
}

func isOwn(tags map[string]string) bool {
	return identity{SOPClassUID: tags["SOPClassUID"], Manufacturer: tags["Manufacturer"],
		SeriesDescription: tags["SeriesDescription"]}.own()
}
