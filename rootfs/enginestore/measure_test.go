package enginestore

import (
	"strings"
	"testing"

	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/tree"
)

// TestMeasurePredictsAdd compares what Measure counts before writing with what Add then writes, into an
// empty tree and into a tree whose store already holds an image sharing layers.
func TestMeasurePredictsAdd(t *testing.T) {
	fx := newFixture(t, []byte("#!/bin/true\n"))
	empty := stage(t)
	holding := stage(t)
	first, err := Add(t.Context(), holding, []Image{fx.storeImage(t, "a")})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		root   *tree.Staged
		images []string
	}{
		{"empty tree, two images", empty, []string{"a", "b"}},
		{"store holding a", first.Staged, []string{"b", "c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var imgs []Image
			for _, n := range tc.images {
				imgs = append(imgs, fx.storeImage(t, n))
			}
			before := treeDigest(t, tc.root.Dir)
			need, err := Measure(t.Context(), tc.root.Dir, imgs)
			if err != nil {
				t.Fatal(err)
			}
			if after := treeDigest(t, tc.root.Dir); len(after) != len(before) {
				t.Fatal("Measure wrote into the tree")
			}
			res, err := Add(t.Context(), tc.root, imgs)
			if err != nil {
				t.Fatal(err)
			}
			if res.LayerBytes != need.LayerBytes {
				t.Errorf("layer bytes: Measure %d, Add %d", need.LayerBytes, res.LayerBytes)
			}
			var written []Layer
			for _, w := range res.Images {
				for _, l := range w.Layers {
					if l.Written {
						written = append(written, l)
					}
				}
			}
			if len(written) != len(need.Layers) {
				t.Fatalf("Measure counts %d layers to write, Add wrote %d", len(need.Layers), len(written))
			}
			for i, l := range need.Layers {
				if l.ChainID != written[i].ChainID || l.Size != written[i].Size || l.CacheID != written[i].CacheID {
					t.Errorf("layer %d: Measure %+v, Add %+v", i, l, written[i])
				}
			}
			e := need.Expected
			got := res.Staged
			if e.Files != got.Files-tc.root.Files || e.Dirs != got.Dirs-tc.root.Dirs ||
				e.Entries != got.Entries-tc.root.Entries || e.Bytes != got.Bytes-tc.root.Bytes {
				t.Errorf("Measure expects %d files %d dirs %d entries %d bytes; Add added %d %d %d %d", e.Files, e.Dirs, e.Entries, e.Bytes,
					got.Files-tc.root.Files, got.Dirs-tc.root.Dirs, got.Entries-tc.root.Entries, got.Bytes-tc.root.Bytes)
			}
			o := ext4.Options{}
			if predicted, actual := ext4.Estimate(tc.root.Expect(e), o), ext4.Estimate(got, o); predicted < actual {
				t.Errorf("partition estimate before writing %d, after %d", predicted, actual)
			}
			if predicted, actual := tc.root.Expect(e).DataBytes(4096), got.DataBytes(4096); predicted < actual || predicted > actual+int64(len(e.Sizes))*4096/4 {
				t.Errorf("data bytes before writing %d, after %d", predicted, actual)
			}
		})
	}
	// A corrupted layer is refused by Measure as by Add.
	bad := fx.storeImage(t, "a")
	bad.Image = wrongConfig{Image: bad.Image, raw: []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:` +
		"0000000000000000000000000000000000000000000000000000000000000000" + `"]}}`)}
	if _, err := Measure(t.Context(), stage(t).Dir, []Image{bad}); err == nil || !strings.Contains(err.Error(), "3 layers but the config lists 1 diffIDs") {
		t.Errorf("Measure of an image whose config lists one diffID for three layers: %v", err)
	}
}
