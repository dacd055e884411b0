// Judge for Config.Encode: what JavaScript's JSON.stringify writes for a JSON document whose object keys
// are sorted by code point. Number literals are carried through verbatim (JSON.parse would round them
// to doubles). Reads the document on stdin, writes the encoding on stdout.
const src = require('fs').readFileSync(0, 'utf8');
const nums = [];
let out = '';
for (let i = 0; i < src.length; ) {
	const c = src[i];
	if (c === '"') {
		let j = i + 1;
		while (src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
		out += src.slice(i, j + 1);
		i = j + 1;
	} else if (c === '-' || (c >= '0' && c <= '9')) {
		const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(src.slice(i));
		nums.push(m[0]);
		out += JSON.stringify('\u0000num' + (nums.length - 1) + '\u0000');
		i += m[0].length;
	} else {
		out += c;
		i++;
	}
}
const byCodePoint = (a, b) => {
	const x = Array.from(a, (ch) => ch.codePointAt(0));
	const y = Array.from(b, (ch) => ch.codePointAt(0));
	for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
	return x.length - y.length;
};
const enc = (v) => {
	if (Array.isArray(v)) return '[' + v.map(enc).join(',') + ']';
	if (v !== null && typeof v === 'object')
		return '{' + Object.keys(v).sort(byCodePoint).map((k) => JSON.stringify(k) + ':' + enc(v[k])).join(',') + '}';
	return JSON.stringify(v);
};
process.stdout.write(enc(JSON.parse(out)).replace(/"\\u0000num([0-9]+)\\u0000"/g, (_, n) => nums[Number(n)]));
