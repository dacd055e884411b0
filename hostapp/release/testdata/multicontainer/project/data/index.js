require("http").createServer((q, s) => s.end("data")).listen(8080);
