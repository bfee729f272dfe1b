// Package e2e holds the end-to-end detection tests: each trains a baseline,
// alone or wrapped by MADDR, through train.Run (the path of `maddr train`) on
// a small generated data set whose anomaly is unmistakable, evaluates the
// saved model file through evaluate.Evaluate (the path of `maddr eval`) and
// requires every group's test AUC to be high, the heads to have learned the
// organ and modality, and the trained network to beat the same network after
// a single update. They catch what unit and parity tests cannot: a negated
// score, swapped labels, an optimizer that does not move, a model file that
// loses the trained weights.
//
// The package has no code outside its tests; this file only documents it.
package e2e
