package dataset

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The trees under testdata/ mirror the real releases file name for file
// name, with images of a few pixels. They are committed; regenerate them
// with
//
//	go test ./dataset -run TestFixtures -update
var update = flag.Bool("update", false, "rewrite the fixture trees under testdata/")

func TestFixtures(t *testing.T) {
	if !*update {
		t.Skip("fixtures are committed; run with -update to rewrite them")
	}
	for _, dir := range []string{"folder", "folder-partial", "manifest", "lits", "msd", "covidct", "shenzhen",
		"shenzhen-kaggle", "montgomery", "bad"} {
		if err := os.RemoveAll(filepath.Join("testdata", dir)); err != nil {
			t.Fatal(err)
		}
	}
	if err := buildFixtures("testdata"); err != nil {
		t.Fatal(err)
	}
}

// fixtureWriter writes files, remembering the first error.
type fixtureWriter struct {
	root string
	err  error
}

func (w *fixtureWriter) file(rel string, data []byte) {
	if w.err != nil {
		return
	}
	p := filepath.Join(w.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.err = err
		return
	}
	w.err = os.WriteFile(p, data, 0o644)
}

// greyPNG is a w x h 8-bit PNG whose pixels depend on seed.
func greyPNG(w, h, seed int) []byte {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = uint8((i*37 + seed*11) % 251)
	}
	var b bytes.Buffer
	png.Encode(&b, m)
	return b.Bytes()
}

// grey16PNG holds 12-bit values in a 16-bit PNG, like Montgomery.
func grey16PNG(w, h, seed int) []byte {
	m := image.NewGray16(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetGray16(x, y, color.Gray16{Y: uint16((x*300 + y*170 + seed*13) % 4096)})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, m)
	return b.Bytes()
}

func rgbJPEG(w, h, seed int) []byte {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Set(x, y, color.RGBA{uint8(x * 30), uint8(y * 30), uint8(seed * 40), 255})
		}
	}
	var b bytes.Buffer
	jpeg.Encode(&b, m, &jpeg.Options{Quality: 90})
	return b.Bytes()
}

func niftiBytes(nx, ny, nz, datatype int, pix []float32, gz bool) []byte {
	var b bytes.Buffer
	if gz {
		zw := gzip.NewWriter(&b)
		if err := writeNIfTI(zw, nx, ny, nz, datatype, pix); err != nil {
			panic(err)
		}
		zw.Close()
	} else if err := writeNIfTI(&b, nx, ny, nz, datatype, pix); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// LiTS fixture volumes: litsSlices slices of litsSide x litsSide; liver on
// slices 2..7, tumour on litsTumour(id).
const litsSide, litsSlices = 8, 10

func litsTumour(id int) []int {
	return [][]int{{4, 5}, nil, {6}}[id%3]
}

// litsVolume returns the CT (int16 HU) and segmentation (uint8) of volume id.
func litsVolume(id int) (ct, seg []float32) {
	n := litsSide * litsSide
	ct = make([]float32, n*litsSlices)
	seg = make([]float32, n*litsSlices)
	tumour := map[int]bool{}
	for _, z := range litsTumour(id) {
		tumour[z] = true
	}
	for z := 0; z < litsSlices; z++ {
		for i := 0; i < n; i++ {
			ct[z*n+i] = float32(-1000 + (id*7+z*3+i*5)%1400)
			if z >= 2 && z <= 7 && i%litsSide >= 2 && i%litsSide < 6 {
				seg[z*n+i] = 1
			}
		}
		if tumour[z] {
			seg[z*n+3*litsSide+3] = 2
		}
	}
	return ct, seg
}

func buildFixtures(root string) error {
	w := &fixtureWriter{root: root}

	// folder: every split directory, plus side files to be ignored.
	for i, f := range []string{"train/normal/a.png", "train/normal/b.png", "train/normal/c.jpg",
		"val/normal/d.png", "val/abnormal/e.png", "val/abnormal/f.png", "test/normal/g.png", "test/abnormal/h.png"} {
		if strings.HasSuffix(f, ".jpg") {
			w.file("folder/"+f, rgbJPEG(6, 5, i))
		} else {
			w.file("folder/"+f, greyPNG(5, 4, i))
		}
	}
	w.file("folder/train/normal/notes.txt", []byte("not an image\n"))
	w.file("folder/train/normal/.DS_Store", []byte{0})
	w.file("folder/train/abnormal/x.png", greyPNG(5, 4, 99))
	w.file("folder-partial/train/normal/a.png", greyPNG(4, 4, 1))
	w.file("folder-partial/train/normal/b.png", greyPNG(4, 4, 2))

	// manifest: relative paths, both label spellings, optional columns.
	w.file("manifest/images/n1.png", greyPNG(4, 4, 1))
	w.file("manifest/images/n2.png", greyPNG(4, 4, 2))
	w.file("manifest/images/a1.png", greyPNG(4, 4, 3))
	w.file("manifest/images/n 3.png", greyPNG(4, 4, 4))
	w.file("manifest/manifest.csv", []byte("path,organ,modality,split,label\n"+
		"images/n1.png,lung,xray,train,normal\n"+
		"images/n2.png,Lung,X-ray,val,0\n"+
		"images/a1.png,lung,xray,val,1\n"+
		"\"images/n 3.png\",lung,xray,test,normal\n"+
		"images/a1.png,lung,xray,test,abnormal\n"))
	w.file("manifest/bad.csv", []byte("path,organ,modality,split,label\n"+
		"images/n1.png,lung,xray,train,normal\n"+
		"images/n2.png,lung,xray,validate,normal\n"+
		"images/a1.png,lung,xray,val,sick\n"+
		",lung,xray,val,normal\n"+
		"images/a1.png,lung,xray,train,abnormal\n"+
		"images/missing.png,lung,xray,test,normal\n"+
		"images/n1.png,lung,xray\n"+
		"images/a1.png,lung,xray,test,1\n"))

	// LiTS: two training batches of uncompressed volumes.
	for id := 0; id < 6; id++ {
		batch := "Training Batch 1"
		if id >= 3 {
			batch = "Training Batch 2"
		}
		ct, seg := litsVolume(id)
		w.file(fmt.Sprintf("lits/%s/volume-%d.nii", batch, id), niftiBytes(litsSide, litsSide, litsSlices, niftiInt16, ct, false))
		w.file(fmt.Sprintf("lits/%s/segmentation-%d.nii", batch, id), niftiBytes(litsSide, litsSide, litsSlices, niftiUint8, seg, false))
	}
	// MSD Task03: gzipped, with the macOS "._" files the archive ships.
	for id := 0; id < 3; id++ {
		ct, seg := litsVolume(id)
		w.file(fmt.Sprintf("msd/imagesTr/liver_%d.nii.gz", id), niftiBytes(litsSide, litsSide, litsSlices, niftiInt16, ct, true))
		w.file(fmt.Sprintf("msd/labelsTr/liver_%d.nii.gz", id), niftiBytes(litsSide, litsSide, litsSlices, niftiUint8, seg, true))
	}
	w.file("msd/imagesTr/._liver_0.nii.gz", []byte("Mac OS X resource fork"))
	w.file("msd/dataset.json", []byte(`{"name": "Liver"}`+"\n"))

	// COVID-CT: names with '%', PNG and JPEG, split lists with CRLF.
	covid := map[string][]string{
		"train": {"2020.01.24.919183-p27-132.png", "covid%1.jpg"},
		"val":   {"val%2.png"},
		"test":  {"test%3.jpg", "t4.png"},
	}
	non := map[string][]string{
		"train": {"1.png", "10%0.jpg", "1000.png"},
		"val":   {"11.png", "12%1.png"},
		"test":  {"13.jpg"},
	}
	k := 0
	for _, set := range []struct {
		class string
		lists map[string][]string
	}{{"COVID", covid}, {"NonCOVID", non}} {
		for _, split := range []string{"train", "val", "test"} {
			names := set.lists[split]
			w.file(fmt.Sprintf("covidct/Data-split/%s/%sCT_%s.txt", set.class, split, set.class),
				[]byte(strings.Join(names, "\r\n")+"\r\n"))
			for _, n := range names {
				k++
				var data []byte
				if strings.HasSuffix(n, ".jpg") {
					data = rgbJPEG(7, 6, k)
				} else {
					data = greyPNG(6, 7, k)
				}
				w.file(fmt.Sprintf("covidct/Images-processed/CT_%s/%s", set.class, n), data)
			}
		}
	}

	// Shenzhen: ids at every boundary of the REFERS split.
	for _, id := range []int{1, 2, 228, 229, 261, 262, 326, 327, 561, 562, 595, 596, 662} {
		lab := 0
		if id > 326 {
			lab = 1
		}
		name := fmt.Sprintf("CHNCXR_%04d_%d", id, lab)
		w.file("shenzhen/ChinaSet_AllFiles/CXR_png/"+name+".png", greyPNG(6, 6, id))
		w.file("shenzhen/ChinaSet_AllFiles/ClinicalReadings/"+name+".txt", []byte("male 35yrs\nnormal\n"))
	}
	w.file("shenzhen/ChinaSet_AllFiles/CXR_png/Thumbs.db", []byte{1, 2, 3})
	for _, name := range []string{"CHNCXR_0001_0", "CHNCXR_0250_0", "CHNCXR_0300_0", "CHNCXR_0570_1", "CHNCXR_0600_1"} {
		w.file("shenzhen-kaggle/images/"+name+".png", greyPNG(5, 5, len(name)))
	}
	w.file("shenzhen-kaggle/shenzhen_metadata.csv", []byte("study_id,sex,age,findings\nCHNCXR_0001_0.png,Male,45,normal\n"))

	// Montgomery: gaps in the numbering, 16-bit PNGs of 12-bit data.
	for i, id := range []int{1, 3, 4, 6, 8, 9, 11, 13, 15, 16, 17, 20} {
		w.file(fmt.Sprintf("montgomery/MontgomerySet/CXR_png/MCUCXR_%04d_0.png", id), grey16PNG(6, 5, i))
	}
	for i, id := range []int{2, 5, 7, 10, 12, 14} {
		w.file(fmt.Sprintf("montgomery/MontgomerySet/CXR_png/MCUCXR_%04d_1.png", id), grey16PNG(6, 5, 50+i))
	}
	w.file("montgomery/MontgomerySet/ManualMask/leftMask/MCUCXR_0001_0.png", greyPNG(6, 5, 0))

	// Bad inputs.
	good := greyPNG(5, 5, 7)
	w.file("bad/folder/train/normal/ok.png", good)
	w.file("bad/folder/train/normal/empty.png", nil)
	w.file("bad/folder/train/normal/truncated.png", good[:len(good)/2])
	w.file("bad/folder/train/normal/garbage.png", []byte("this is not an image at all, just text"))
	w.file("bad/folder/val/normal/ok.png", good)
	w.file("bad/folder/val/abnormal/ok.png", good)
	w.file("bad/folder/test/abnormal/ok.png", good)
	if w.err == nil {
		w.err = os.MkdirAll(filepath.Join(root, "bad/folder/test/normal"), 0o755)
		w.file("bad/folder/test/normal/.keep", nil)
	}
	for id := 0; id < 4; id++ {
		ct, seg := litsVolume(id)
		w.file(fmt.Sprintf("bad/lits/volume-%d.nii", id), niftiBytes(litsSide, litsSide, litsSlices, niftiInt16, ct, false))
		w.file(fmt.Sprintf("bad/lits/segmentation-%d.nii", id), niftiBytes(litsSide, litsSide, litsSlices, niftiUint8, seg, false))
	}
	ct, _ := litsVolume(4)
	_, seg := litsVolume(4)
	w.file("bad/lits/volume-4.nii", niftiBytes(litsSide, litsSide, litsSlices, niftiInt16, ct, false))
	w.file("bad/lits/segmentation-4.nii", niftiBytes(litsSide, litsSide/2, litsSlices, niftiUint8, seg[:len(seg)/2], false))
	w.file("bad/lits/volume-5.nii", niftiBytes(litsSide, litsSide, litsSlices, niftiInt16, ct, false))
	ctNaN, seg6 := litsVolume(6)
	for i := range ctNaN {
		if i/(litsSide*litsSide) == 3 {
			ctNaN[i] = float32(math.NaN())
		}
	}
	w.file("bad/lits/volume-6.nii", niftiBytes(litsSide, litsSide, litsSlices, niftiFloat32, ctNaN, false))
	w.file("bad/lits/segmentation-6.nii", niftiBytes(litsSide, litsSide, litsSlices, niftiUint8, seg6, false))
	w.file("bad/lits/volume-7.nii", nil)
	w.file("bad/lits/segmentation-7.nii", niftiBytes(litsSide, litsSide, litsSlices, niftiUint8, seg6, false))
	for _, name := range []string{"CHNCXR_0001_0", "CHNCXR_0250_0", "CHNCXR_0300_0", "CHNCXR_0400_0", "CHNCXR_0100_1",
		"CHNCXR_0600_1", "CHNCXR_0570_1"} {
		w.file("bad/shenzhen/CXR_png/"+name+".png", good)
	}
	w.file("bad/covidct/Data-split/COVID/trainCT_COVID.txt", []byte("c1.png\n"))
	w.file("bad/covidct/Data-split/COVID/valCT_COVID.txt", []byte("c2.png\n"))
	w.file("bad/covidct/Data-split/COVID/testCT_COVID.txt", []byte("c3.png\nnot-there.png\n"))
	w.file("bad/covidct/Data-split/NonCOVID/trainCT_NonCOVID.txt", []byte("n1.png\n"))
	w.file("bad/covidct/Data-split/NonCOVID/valCT_NonCOVID.txt", []byte("\n"))
	w.file("bad/covidct/Data-split/NonCOVID/testCT_NonCOVID.txt", []byte("n3.png\n"))
	for _, f := range []string{"CT_COVID/c1.png", "CT_COVID/c2.png", "CT_COVID/c3.png", "CT_NonCOVID/n1.png", "CT_NonCOVID/n3.png"} {
		w.file("bad/covidct/Images-processed/"+f, good)
	}
	return w.err
}
