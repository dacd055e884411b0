package compose

import (
	"bytes"
	"maps"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// dotenvCases are env files for parseEnvFile: every form compose-go's dotenv reads, and broken ones.
var dotenvCases = []string{
	"", "\n", "A=1", "A=1\n", "A=1\nB=2\n", "A=1\r\nB=2\r\n", "\xef\xbb\xbfA=1\n", "  A = 1  \n", "A=",
	"A=\n", "A", "A\n", "A \n", "TAG\n", "TAG \nB=2\n", "U\n", "A:1\n", "A: 1\n", "export A=1\n",
	"export  A=1\n", "export\tA=1\n", "export\nA=1\n", "export", "export ", "exportA=1\n", "export=1\n",
	"# comment\nA=1\n", "A=1 # comment\n", "A=1# not a comment\n", "A=1\t# tab\n", "#\n#\n\nA=1", "  # x\nA=1",
	"A='single'\n", "A=\"double\"\n", "A='it\\'s'\n", "A=\"say \\\"hi\\\"\"\n", "A=\"a\\nb\\tc\\\\d\"\n",
	"A='a\\nb'\n", "A=\"\\a\\b\\c\\f\\r\\v\\$\\x\\u00e9\"\n", "A=\"\\0101\\0377\\0400\\0777\\018\\01\\012\\0\"\n",
	"A=\"multi\nline\"\nB=2\n", "A='multi\nline'\nB=${A}\n", "A=\"unterminated\nB=2\n", "A='unterminated",
	"A=\"x\"B=2\n", "A=\"x\" # c\nB=2\n", "A=\"x\" junk\n", "A=$TAG\n", "A=${TAG}\n", "A=${U:-d}\n",
	"A=${U:?need it}\n", "A=${\n", "A=\"${\"\n", "A='${'\n", "A=1\nB=${A}\n", "A=1\nB=\"$A$A\"\n",
	"A=$$x\n", "A=\"\\$x\"\n", "A='$x'\n", "A B=1\n", "A\tB=1\n", "A\u00a0B=1\n", "a.b-c[0]=1\n",
	"\u00e9=1\n", "\u0663=1\n", "A/B=1\n", "A$=1\n", "A\xff=1\n", "=1\n", "=\n", ":\n", "A==1\n",
	"A=1=2\n", "A=#1\n", "A= #1\n", "A=  x  \n", "A=x \\\n", "A=\"a\\\"\n", "A=\"\\\\\"\n",
	"A=\"x\\\"\"\nB=1", "\u2003A=1\n", "export \u2003A=1\n", "A=1\n\n\n\nB\nC=${B}\n", "A=1\nA=2\n",
	"A=\"${A}x\"\n", "A=\"${U-${TAG}}\"\n", "A=${TAG}${TAG}\n", "KEY WITH SPACE\n", "A B\n", "A =\n",
	"A=\"\n\n\nunterminated", "\n\nA!=1\n", "A=1\n\nB@=2\n", "A=\xff\xfe\n", "A=\"\xff\"\n",
}

// dotenvLookup resolves TAG and EMPTY, leaving every other name to what the file sets.
func dotenvLookup(name string) (string, bool) {
	switch name {
	case "TAG":
		return "v1", true
	case "EMPTY":
		return "", true
	}
	return "", false
}

func compareDotenv(t *testing.T, data []byte, format string) {
	t.Helper()
	got, want := map[string]string{"PRE": "set"}, map[string]string{"PRE": "set"}
	err := parseEnvFile(data, "dir/f.env", got, dotenvLookup, format)
	if err != nil && strings.Contains(err.Error(), "nested more than") {
		return
	}
	wantErr := dotenv.ParseWithFormat(bytes.NewReader(data), "dir/f.env", want, dotenvLookup, format)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Errorf("%q: error %v, compose-go %v", short(string(data)), err, wantErr)
		return
	}
	if err == nil && !maps.Equal(got, want) {
		t.Errorf("%q: %q, compose-go %q", short(string(data)), got, want)
	}
}

// TestParseEnvFileMatchesComposeGo compares parseEnvFile with compose-go's dotenv package: the same
// variables, or the same error.
func TestParseEnvFileMatchesComposeGo(t *testing.T) {
	quietComposeGo()
	cases := append([]string{}, dotenvCases...)
	cases = append(cases,
		strings.Repeat("# comment\n", 20000)+"A=1\n",
		strings.Repeat("A=1\n", 20000),
		strings.Repeat("\n", 50000)+"A=\"unterminated",
		"A=\""+strings.Repeat("x\\n", 20000)+"\"\n",
		strings.Repeat("A=${A}x\n", 2000),
	)
	for _, c := range cases {
		compareDotenv(t, []byte(c), "")
	}
	for _, format := range []string{".env", "raw", "json"} {
		compareDotenv(t, []byte("A=1\n"), format)
	}
}

// FuzzParseEnvFileMatchesComposeGo: parseEnvFile and compose-go's dotenv package agree on every file.
func FuzzParseEnvFileMatchesComposeGo(f *testing.F) {
	for _, c := range dotenvCases {
		f.Add([]byte(c))
	}
	quietComposeGo()
	f.Fuzz(func(t *testing.T, data []byte) {
		compareDotenv(t, data, "")
	})
}
