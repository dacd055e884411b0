// Package release turns a balena project folder into what an engine builds and a device runs, as balena's
// builder does, offline.
//
// The flow: Render resolves the project for one device type (a docker-compose.yml, or a lone Dockerfile,
// Dockerfile.template or package.json that becomes balena's single-container default compose with service
// main), chooses each build service's Dockerfile, renders its template variables and writes one build
// context per service and the resolved compose file into an output folder; Build builds those contexts with
// Docker's BuildKit for the device type's architecture and saves the images; hostapp/preload then puts them
// into an image.
//
// Rendering follows balena's builder (balena-cli, through @balena/compose's multibuild and its Dockerfile
// resolvers):
//   - Dockerfile choice, per build context: the compose file's build.dockerfile when given; else
//     Dockerfile.<device-type>, Dockerfile.<arch>, Dockerfile.template, Dockerfile, in that order; else a
//     package.json, built as balena builds a Node.js project (npm install, then npm start when package.json
//     has a start script, else node server.js).
//   - Template variables are written %%NAME%% (NAME an upper-case letter then upper-case letters and _);
//     lines starting with # are left alone. Dockerfile.template, Dockerfile.<device-type>,
//     Dockerfile.<arch> and a given build.dockerfile with one of those endings are rendered (and written
//     without the ending); a plain Dockerfile is not. The variables: BALENA_MACHINE_NAME and RESIN_MACHINE_NAME (the device-type slug, e.g.
//     raspberrypi4-64 or intel-nuc: balena renders the slug, not the Yocto machine, and names its base
//     images after it), BALENA_ARCH and RESIN_ARCH (the balena arch: rpi, armv7hf, aarch64, i386,
//     i386-nlp, amd64), BALENA_SERVICE_NAME (the compose service), BALENA_APP_NAME (Options.AppName, else
//     the project folder's name, as balena-cli names a local project) and BALENA_RELEASE_HASH
//     (Options.ReleaseHash, else "unavailable", balena-cli's value for a local build). There is no
//     RESIN_ form of the last three.
//   - A variable that does not exist is left as written and reported through Options.Log. (Current
//     balena-cli refuses such a template instead; older builders left it.)
//   - The compose file is read with config/compose, which refuses what balena does not support with the
//     field's name and line.
//
// The project is only read: files are copied into the output (without .git and what .dockerignore
// excludes; .dockerignore itself is kept so the engine honours it too), symlinks are copied as links and
// refused when they point outside the project, and the output may not lie inside the project.
package release
