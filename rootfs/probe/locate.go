package probe

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hostos/hostos/partition"
	"github.com/hostos/hostos/partition/disk"
)

// ErrNotFound means no partition carries any of the labels asked for.
var ErrNotFound = errors.New("partition not found")

// Locate returns the partition whose filesystem label (probed) or GPT name equals one of labels. It first tries
// every label for an exact match, in order, then every label ignoring case (old balena images say RESIN-BOOT).
// Two partitions matching the same label is an error: balenaOS finds partitions by label, so a duplicate is
// ambiguous. A nil t reads the table from d. The returned partition carries its probed filesystem label.
func Locate(d disk.Disk, t *partition.Table, labels ...string) (partition.Partition, error) {
	if len(labels) == 0 {
		return partition.Partition{}, errors.New("locate partition: no label given")
	}
	if t == nil {
		var err error
		if t, err = partition.Read(d, d.Size(), d.SectorSize()); err != nil {
			return partition.Partition{}, fmt.Errorf("locate partition: %w", err)
		}
	}
	probed := make([]partition.Partition, len(t.Partitions))
	for i, p := range t.Partitions {
		_, label, err := Filesystem(d, p.Start, p.Size)
		if err != nil {
			return partition.Partition{}, fmt.Errorf("locate partition: partition %d: %w", p.Number, err)
		}
		p.Label = label
		probed[i] = p
	}
	for _, fold := range []bool{false, true} {
		for _, want := range labels {
			if want == "" {
				continue
			}
			var found []partition.Partition
			for _, p := range probed {
				if labelMatch(p.Label, want, fold) || labelMatch(p.Name, want, fold) {
					found = append(found, p)
				}
			}
			switch len(found) {
			case 0:
				continue
			case 1:
				return found[0], nil
			default:
				nums := make([]string, len(found))
				for i, p := range found {
					nums[i] = strconv.Itoa(p.Number)
				}
				return partition.Partition{}, fmt.Errorf("locate partition %q: partitions %s all carry it", want, strings.Join(nums, ", "))
			}
		}
	}
	quoted := make([]string, len(labels))
	for i, l := range labels {
		quoted[i] = strconv.Quote(l)
	}
	return partition.Partition{}, fmt.Errorf("locate partition %s: %w", strings.Join(quoted, " or "), ErrNotFound)
}

func labelMatch(have, want string, fold bool) bool {
	if fold {
		return strings.EqualFold(have, want)
	}
	return have == want
}
