package bootenv

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// U-Boot boards keep their part of the environment as text files on the boot partition
// (resinOS_uEnv.txt, bootcount.env), which the boot script loads with `env import -t`. That import reads
// "name=value" lines up to the first NUL byte: blanks before a name are skipped, lines starting with '#'
// are comments, and in a value a backslash makes the next byte literal (a backslash before a newline
// continues the value on the next line). A "name=" line with an empty value deletes the variable, and
// only '\n' ends a line: a '\r' of a CRLF file stays in the value.

// DecodeUEnv parses a U-Boot text environment as `env import -t` does. It is stricter in two ways: a line
// without '=' (which U-Boot takes as deleting the variable) is an error, and so is a name outside
// [A-Za-z0-9_.-]. An empty value decodes as "". When a name repeats, the last value wins, as in U-Boot.
func DecodeUEnv(data []byte) (map[string]string, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		data = data[:i]
	}
	vars := map[string]string{}
	line := 1
	for len(data) > 0 {
		data = bytes.TrimLeft(data, " \t")
		eol := bytes.IndexByte(data, '\n')
		if eol < 0 {
			eol = len(data)
		}
		if eol == 0 || data[0] == '#' {
			data = data[min(eol+1, len(data)):]
			line++
			continue
		}
		name, _, ok := bytes.Cut(data[:eol], []byte("="))
		if !ok {
			return nil, fmt.Errorf("u-boot environment line %d: %q has no '='", line, data[:eol])
		}
		if !validUEnvName(string(name)) {
			return nil, fmt.Errorf("u-boot environment line %d: bad variable name %q", line, name)
		}
		var v []byte
		i := len(name) + 1
		for ; i < len(data) && data[i] != '\n'; i++ {
			if data[i] == '\\' && i+1 < len(data) {
				i++
				if data[i] == '\n' {
					line++
				}
			}
			v = append(v, data[i])
		}
		vars[string(name)] = string(v)
		data = data[min(i+1, len(data)):]
		line++
	}
	return vars, nil
}

// EncodeUEnv returns vars as U-Boot text environment lines "name=value\n", sorted by name, with
// backslashes in values escaped so that `env import -t` and DecodeUEnv read the values back unchanged.
// Variables that ValidateUEnv rejects are left out, since no line could carry them: callers validate
// first.
func EncodeUEnv(vars map[string]string) []byte {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		v := vars[k]
		if checkUEnvVar(k, v) != nil {
			continue
		}
		b.WriteString(k)
		b.WriteByte('=')
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[i])
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ValidateUEnv checks that every variable can be written as a U-Boot text environment line: a name of
// [A-Za-z0-9_.-] and a value without newline or NUL. It reports the first offender by name.
func ValidateUEnv(vars map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if err := checkUEnvVar(k, vars[k]); err != nil {
			return err
		}
	}
	return nil
}

func checkUEnvVar(name, value string) error {
	if !validUEnvName(name) {
		return fmt.Errorf("u-boot environment variable %q: bad name, want [A-Za-z0-9_.-]", name)
	}
	if strings.ContainsAny(value, "\n\x00") {
		return fmt.Errorf("u-boot environment variable %q: value holds a newline or NUL", name)
	}
	return nil
}

func validUEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// FormatRootPart writes a root partition number as balenaOS U-Boot boards keep it in resin_root_part:
// hexadecimal, lower case, without prefix (partition 10 is "a").
func FormatRootPart(n int) string {
	return strconv.FormatInt(int64(n), 16)
}

// ParseRootPart reads a resin_root_part value: a partition number in hexadecimal, with or without "0x",
// in either case ("10" is partition 16). Partitions count from 1.
func ParseRootPart(s string) (int, error) {
	digits := s
	if len(digits) > 2 && (digits[:2] == "0x" || digits[:2] == "0X") {
		digits = digits[2:]
	}
	n, err := strconv.ParseUint(digits, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("root partition %q: not a hexadecimal partition number", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("root partition %q: partitions count from 1", s)
	}
	return int(n), nil
}
