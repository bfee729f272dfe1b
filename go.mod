module github.com/maddr-project/maddr

go 1.26.0

require github.com/suyashkumar/dicom v1.1.0

require (
	golang.org/x/exp v0.0.0-20240525044651-4c93da0ed11d // indirect
	golang.org/x/text v0.44.0 // indirect
)
