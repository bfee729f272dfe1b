// Package infer is the one way a loaded model is applied to images.
package infer
