// Package bundle writes and reads hostos update bundles: a signed, streamable tar of a compressed root
// filesystem image and the boot partition files that go with it.
//
// A bundle is read once, front to back, from any io.Reader (a file, a pipe, an HTTP body), and never
// stored: NewReader checks the metadata and its signature, Reader.Rootfs yields the decompressed
// filesystem image while hashing it, and Reader.Boot yields the boot files. Memory use does not grow with
// the payload. Every size and digest is checked; a mismatch, a truncation or a malformed archive is an
// error wrapping ErrCorrupt, reported at the latest when the stream that carries it reaches its end.
//
// # FORMAT
//
// Format version 1. A bundle is a POSIX tar stream (ustar headers; PAX extended headers only where ustar
// cannot hold a value, such as a member of 8 GiB or more), so `tar tvf` lists it. Its members are regular
// files and come in this order, nothing else before, between or after them:
//
//  1. hostos-bundle.json: the metadata (below).
//  2. hostos-bundle.json.sig, optional: the Ed25519 signature (RFC 8032, pure Ed25519) of the exact
//     bytes of member 1, as 64 raw bytes. `openssl pkeyutl -sign -rawin` makes the same bytes.
//  3. the root filesystem member, named by metadata rootfs.name (hostos writes "rootfs.ext4.zst"):
//     an ext4 filesystem image, compressed as metadata rootfs.compression says.
//  4. the boot member, present exactly when the metadata has "boot", named by boot.name (hostos writes
//     "boot.tar"): a tar of the files to put on the boot partition, compressed as boot.compression says.
//     Its entries are directories and regular files only, with slash-separated paths relative to the
//     boot partition root (a leading "./" is allowed; absolute paths, ".." and empty elements are not).
//
// The archive ends with the two zero blocks of a tar end-of-archive marker; a stream that stops without
// them is truncated. Readers do not look past the marker.
//
// The metadata is a JSON object written in canonical form: keys sorted, no insignificant whitespace, no
// HTML escaping. Strings are printable ASCII, so this coincides with RFC 8785. Readers verify the
// signature over the bytes as stored and do not require the canonical form, but reject unknown keys.
//
//	{
//	  "arch":       "aarch64",            // balena architecture
//	  "boot":       { ...payload... },    // optional
//	  "created":    1700000000,           // Unix seconds; also every member's mtime
//	  "deviceType": "raspberrypi4-64",    // device-type slug
//	  "format":     1,
//	  "rootfs":     { ...payload... },
//	  "version":    "6.0.13"              // OS version
//	}
//
// A payload describes one member:
//
//	{
//	  "compression": "zstd",              // "zstd" or "none" ("delta": see DELTA BUNDLES)
//	  "filesystem":  "ext4",              // rootfs: "ext4"; boot: absent
//	  "imageChunkSize":    4194304,         // optional, with imageChunksSha256 (root filesystem only):
//	  "imageChunksSha256": "<64 hex>",      // sha256 of the concatenated raw sha256 of each chunk of the
//	                                        // decompressed bytes, so that it can be computed on several cores
//	  "imageSha256": "<64 hex digits>",   // sha256 of the decompressed bytes
//	  "imageSize":   1234,                // size of the decompressed bytes
//	  "name":        "rootfs.ext4.zst",   // member name: a plain file name
//	  "sha256":      "<64 hex digits>",   // sha256 of the member bytes as stored
//	  "size":        567                  // size of the member as stored
//	}
//
// With compression "none" the stored and decompressed size and digest are the same. A zstd payload is
// one or more zstd frames whose window is at most 128 MiB, which bounds what a reader must hold.
//
// # DELTA BUNDLES
//
// Format version 2 is a delta bundle: the same members in the same order, but the root filesystem member
// (hostos writes "rootfs.ext4.delta") is a hostos delta (package hostapp/delta) that makes the new image
// from the image a device already runs, and the metadata gains "delta":
//
//	{
//	  "delta": {
//	    "baseSha256":  "<64 hex>",          // sha256 of the base image's first baseSize bytes, with its
//	    "baseSize":    1234,                // volume label cleared (a slot's filesystem carries its label)
//	    "baseVersion": "6.0.12",            // OS version of the base, for messages
//	    "indexSha256": "<64 hex>"           // sha256 of the chunk index the member holds (hostapp/delta's
//	  },                                    // encoding): the new image's full list of chunks and their sha256
//	  "format": 2,
//	  "rootfs": { "compression": "delta", "name": "rootfs.ext4.delta", ... },
//	  ...                                   // the rest as in format 1
//	}
//
// In the rootfs payload, "size" and "sha256" describe the delta member as stored and "imageSize",
// "imageSha256" (and the optional chunked digest) the whole new image, exactly as in a full bundle, so
// that the image assembled from the base's chunks and the delta's is checked as a full update's. The
// member is: "HOSTOSDL", format u32, base size u64, base sha256, base version (u16 length, bytes), index
// length u64, the index, then one zstd stream of the chunks of the new image that the base lacks, in
// index order. A format 2 bundle without "delta", or "delta" or compression "delta" anywhere else, is
// malformed. Readers of format 1 only refuse format 2 as unsupported; format 1 bundles are unchanged.
//
// A chunked bundle is format 2 too, with "chunks": {"store": "chunks"} in place of "delta": its root
// filesystem member (hostos writes "rootfs.ext4.idx", compression "index") is the chunk index of the new
// image alone, and each chunk of the image is a file in the directory the store names, next to the
// bundle, called by the chunk's sha256 in lower-case hex (one store can serve many versions). Size and
// sha256 describe the index as stored, imageSize and imageSha256 the image, so the index is signed as
// the rest of the metadata is; a reader fetches the chunks its running slot lacks and checks each
// against the index.
//
// Members are written with mode 0644, uid and gid 0, no user or group names and mtime = created, and the
// boot tar likewise (directories 0755), so the same inputs give the same bundle bytes.
package bundle
