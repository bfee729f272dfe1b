package server

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the scoring latency
// histogram: from a cached small PNG to a large volume on a busy CPU.
var latencyBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// metrics are the counters /metrics exposes in Prometheus text format,
// written by hand: a handful of series does not need a client library.
type metrics struct {
	mu        sync.Mutex
	requests  map[[2]string]int64 // path, status code
	decisions map[string]int64
	images    int64
	buckets   []int64 // cumulative counts per latencyBuckets entry
	count     int64
	sum       float64
}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]int64{}, decisions: map[string]int64{}, buckets: make([]int64, len(latencyBuckets))}
}

func (m *metrics) request(path string, code int) {
	m.mu.Lock()
	m.requests[[2]string{path, strconv.Itoa(code)}]++
	m.mu.Unlock()
}

func (m *metrics) scored(decisions []string, took time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range decisions {
		m.decisions[d]++
	}
	m.images += int64(len(decisions))
	sec := took.Seconds()
	for i, b := range latencyBuckets {
		if sec <= b {
			m.buckets[i]++
		}
	}
	m.count++
	m.sum += sec
}

// gauges are read at scrape time.
type gauges struct {
	queueDepth, queueCapacity, busy, workers int
	model, sha, precision                    string
}

func (m *metrics) write(w io.Writer, g gauges) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b []byte
	p := func(format string, a ...any) { b = fmt.Appendf(b, format, a...) }
	p("# HELP maddr_model_info The model this server scores with, and the precision of its scoring.\n# TYPE maddr_model_info gauge\n")
	p("maddr_model_info{model=%q,sha256=%q,precision=%q} 1\n", g.model, g.sha, g.precision)
	p("# HELP maddr_http_requests_total HTTP requests by path and status code.\n# TYPE maddr_http_requests_total counter\n")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		p("maddr_http_requests_total{path=%q,code=%q} %d\n", k[0], k[1], m.requests[k])
	}
	p("# HELP maddr_score_duration_seconds Time to score one upload, from queueing to the answer.\n# TYPE maddr_score_duration_seconds histogram\n")
	for i, ub := range latencyBuckets {
		p("maddr_score_duration_seconds_bucket{le=%q} %d\n", strconv.FormatFloat(ub, 'g', -1, 64), m.buckets[i])
	}
	p("maddr_score_duration_seconds_bucket{le=\"+Inf\"} %d\n", m.count)
	p("maddr_score_duration_seconds_sum %g\nmaddr_score_duration_seconds_count %d\n", m.sum, m.count)
	p("# HELP maddr_images_scored_total 2-D images scored (slices count one each).\n# TYPE maddr_images_scored_total counter\n")
	p("maddr_images_scored_total %d\n", m.images)
	p("# HELP maddr_decisions_total Scored images by decision.\n# TYPE maddr_decisions_total counter\n")
	ds := make([]string, 0, len(m.decisions))
	for d := range m.decisions {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	for _, d := range ds {
		p("maddr_decisions_total{decision=%q} %d\n", d, m.decisions[d])
	}
	p("# HELP maddr_queue_depth Uploads waiting for a worker.\n# TYPE maddr_queue_depth gauge\nmaddr_queue_depth %d\n", g.queueDepth)
	p("# HELP maddr_queue_capacity Uploads that can wait before the server answers 503.\n# TYPE maddr_queue_capacity gauge\nmaddr_queue_capacity %d\n", g.queueCapacity)
	p("# HELP maddr_workers_busy Workers scoring right now.\n# TYPE maddr_workers_busy gauge\nmaddr_workers_busy %d\n", g.busy)
	p("# HELP maddr_workers Scoring workers.\n# TYPE maddr_workers gauge\nmaddr_workers %d\n", g.workers)
	_, err := w.Write(b)
	return err
}
