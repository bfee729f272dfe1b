module github.com/maddr-project/maddr

go 1.24

require (
	github.com/nlpodyssey/gopickle v0.3.0 // indirect
	github.com/suyashkumar/dicom v1.1.0 // indirect
	golang.org/x/exp v0.0.0-20240525044651-4c93da0ed11d // indirect
	golang.org/x/image v0.48.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
