// A plain Node.js application for the proxy tests, written the way Node
// applications are: it binds $PORT itself and closes its server on SIGTERM.
// No npm packages: the WebSocket handshake is done by hand.
'use strict';
const http = require('http');
const crypto = require('crypto');

const version = process.env.APP_VERSION || 'dev';
const healthy = !process.env.APP_UNHEALTHY;
let hits = 0; // requests other than /healthz and /hits

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(healthy ? 200 : 503);
    res.end(healthy ? 'ok' : 'unhealthy');
    return;
  }
  if (req.url === '/hits') {
    res.end(String(hits));
    return;
  }
  hits++;
  if (req.url === '/sse') {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    let n = 0;
    const t = setInterval(() => res.write(`data: ${version} ${n++}\n\n`), 20);
    res.on('close', () => clearInterval(t));
    return;
  }
  if (req.method === 'POST') {
    const h = crypto.createHash('sha256');
    let size = 0;
    req.on('data', (c) => { size += c.length; h.update(c); });
    req.on('end', () => res.end(`${version} ${size} ${h.digest('hex')}`));
    return;
  }
  res.end(version);
});

// WebSocket: answers each small masked text frame with "VERSION: TEXT".
server.on('upgrade', (req, socket) => {
  hits++;
  const accept = crypto.createHash('sha1')
    .update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const len = buf.length >= 2 ? buf[1] & 0x7f : 0; // frames under 126 bytes only
      if (buf.length < 6 || buf.length < 6 + len) break;
      const mask = buf.subarray(2, 6);
      const text = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]));
      buf = buf.subarray(6 + len);
      const reply = Buffer.from(`${version}: ${text}`);
      socket.write(Buffer.concat([Buffer.from([0x81, reply.length]), reply]));
    }
  });
  socket.on('error', () => {});
});

server.listen(process.env.PORT);
process.on('SIGTERM', () => server.close());
