package dataset

import (
	"fmt"
	"sort"
)

// Vocab maps class names to indices (the position in the list). Its order
// matters: the focal loss weights classes by index, so a model stores its
// vocabularies and scoring reuses them.
type Vocab []string

// Index returns the class index of name.
func (v Vocab) Index(name string) (int, bool) {
	for i, n := range v {
		if n == name {
			return i, true
		}
	}
	return -1, false
}

// The paper's class orders (METHODS 7.4): liver=0, lung=1; CT=0, X-ray=1.
var (
	PaperOrgans     = Vocab{"liver", "lung"}
	PaperModalities = Vocab{"ct", "xray"}
)

// BuildVocab orders the distinct names: names of preferred that occur come
// first in preferred's order, the rest follow sorted.
func BuildVocab(names []string, preferred Vocab) Vocab {
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	var v Vocab
	for _, p := range preferred {
		if seen[p] {
			v = append(v, p)
			delete(seen, p)
		}
	}
	rest := make([]string, 0, len(seen))
	for n := range seen {
		rest = append(rest, n)
	}
	sort.Strings(rest)
	return append(v, rest...)
}

// Vocabs are the three vocabularies of a training set, stored with a model.
type Vocabs struct {
	Organ    Vocab `json:"organ"`
	Modality Vocab `json:"modality"`
	Group    Vocab `json:"group"`
}

// BuildVocabs derives the vocabularies from samples. A non-empty vocabulary
// in explicit is used as given (its order wins) and every sample must find
// its name in it.
func BuildVocabs(samples []Sample, explicit Vocabs) (Vocabs, error) {
	organs := make([]string, len(samples))
	modalities := make([]string, len(samples))
	groups := make([]string, len(samples))
	for i, s := range samples {
		organs[i], modalities[i], groups[i] = s.Organ, s.Modality, s.Group
	}
	pick := func(kind string, names []string, given, preferred Vocab) (Vocab, error) {
		if len(given) == 0 {
			return BuildVocab(names, preferred), nil
		}
		for _, n := range names {
			if _, ok := given.Index(n); !ok {
				return nil, fmt.Errorf("%s %q of the data is not in the given %s order %v", kind, n, kind, given)
			}
		}
		return given, nil
	}
	var v Vocabs
	var err error
	if v.Organ, err = pick("organ", organs, explicit.Organ, PaperOrgans); err != nil {
		return Vocabs{}, err
	}
	if v.Modality, err = pick("modality", modalities, explicit.Modality, PaperModalities); err != nil {
		return Vocabs{}, err
	}
	if v.Group, err = pick("group", groups, explicit.Group, nil); err != nil {
		return Vocabs{}, err
	}
	return v, nil
}
