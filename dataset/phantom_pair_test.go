package dataset

import "testing"

func TestPhantomGroupPair(t *testing.T) {
	organ, modality, ok := PhantomGroupPair("chest-xray")
	if !ok || organ != "lung" || modality != "xray" {
		t.Errorf("chest-xray = %s, %s, %v; want lung, xray", organ, modality, ok)
	}
	if _, _, ok := PhantomGroupPair("brain-mr"); ok {
		t.Error("brain-mr is not a phantom group")
	}
}
