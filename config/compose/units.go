package compose

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file reads byte sizes (512m, 1.5GiB) as go-units' RAMInBytes does and durations (1m30s, 2d, 1w) as
// go-str2duration does, for what compose fields take; it replaces those modules so that the hostos
// binary compiles no regexps at start-up (units_test.go compares them).

var errSize = errors.New("invalid size")

// ramInBytes reads a size in bytes with an optional binary unit suffix (k, m, g, t, p, any case, with or
// without a trailing b or ib; 1k is 1024), a space allowed before the suffix.
func ramInBytes(s string) (int64, error) {
	sep := strings.LastIndexAny(s, "0123456789. ")
	if sep < 0 {
		return -1, errSize
	}
	num, sfx := s[:sep+1], s[sep+1:]
	if s[sep] == ' ' {
		num = s[:sep]
	}
	size, err := strconv.ParseFloat(num, 64)
	if err != nil || size < 0 {
		return -1, errSize
	}
	if sfx == "" {
		return int64(size), nil
	}
	if len(sfx) > 3 {
		return -1, errSize
	}
	// Lowered as go-units lowers it (Unicode lowering can change its length: K, the Kelvin sign, is k).
	sfx = strings.ToLower(sfx)
	var mul float64
	switch sfx[0] {
	case 'b':
		if len(sfx) > 1 {
			return -1, errSize
		}
		return int64(size), nil
	case 'k':
		mul = 1 << 10
	case 'm':
		mul = 1 << 20
	case 'g':
		mul = 1 << 30
	case 't':
		mul = 1 << 40
	case 'p':
		mul = 1 << 50
	default:
		return -1, errSize
	}
	if len(sfx) == 2 && sfx[1] != 'b' || len(sfx) == 3 && sfx[1:] != "ib" {
		return -1, errSize
	}
	return int64(size * mul), nil
}

var errDuration = errors.New("invalid duration")

// durationUnit is the length of a unit in nanoseconds, or 0 for no unit.
func durationUnit(u string) int64 {
	switch u {
	case "ns":
		return int64(time.Nanosecond)
	case "us", "\u00b5s", "\u03bcs":
		return int64(time.Microsecond)
	case "ms":
		return int64(time.Millisecond)
	case "s":
		return int64(time.Second)
	case "m":
		return int64(time.Minute)
	case "h":
		return int64(time.Hour)
	case "d":
		return int64(24 * time.Hour)
	case "w":
		return int64(7 * 24 * time.Hour)
	}
	return 0
}

// parseDuration reads a duration as time.ParseDuration does, with days (d) and weeks (w) as units too,
// and without its special case of the most negative duration.
func parseDuration(s string) (time.Duration, error) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, errDuration
	}
	var d int64
	for s != "" {
		if s[0] != '.' && (s[0] < '0' || s[0] > '9') {
			return 0, errDuration
		}
		// the integer part, which must not overflow
		var v int64
		i := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if v > math.MaxInt64/10 {
				return 0, errDuration
			}
			v = v*10 + int64(s[i]-'0')
			if v < 0 {
				return 0, errDuration
			}
		}
		digits := i > 0
		s = s[i:]
		// the fraction, whose digits past int64's precision are dropped
		var f int64
		scale := 1.0
		if s != "" && s[0] == '.' {
			s = s[1:]
			full := false
			i = 0
			for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
				if full {
					continue
				}
				if f > math.MaxInt64/10 {
					full = true
					continue
				}
				g := f*10 + int64(s[i]-'0')
				if g < 0 {
					full = true
					continue
				}
				f = g
				scale *= 10
			}
			digits = digits || i > 0
			s = s[i:]
		}
		if !digits {
			return 0, errDuration
		}
		i = 0
		for i < len(s) && s[i] != '.' && (s[i] < '0' || s[i] > '9') {
			i++
		}
		unit := durationUnit(s[:i])
		if unit == 0 {
			return 0, errDuration
		}
		s = s[i:]
		if v > math.MaxInt64/unit {
			return 0, errDuration
		}
		v *= unit
		if f > 0 {
			v += int64(float64(f) * (float64(unit) / scale))
			if v < 0 {
				return 0, errDuration
			}
		}
		d += v
		if d < 0 {
			return 0, errDuration
		}
	}
	if neg {
		d = -d
	}
	return time.Duration(d), nil
}
