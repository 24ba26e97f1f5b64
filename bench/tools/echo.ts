// The benchmarks' server app: echoes every byte on each port given, run inside a pod netns (ip netns exec).
// Usage: echo.js PORT [PORT ...]   Prints "ready" once every port listens.
import net from 'node:net';

const ports = process.argv.slice(2).map(Number);
if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p <= 0 || p > 65535)) {
  console.error('usage: echo.js PORT [PORT ...]');
  process.exit(2);
}

let listening = 0;
for (const port of ports) {
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  server.listen({ port, host: '0.0.0.0', backlog: 4096 }, () => {
    if (++listening === ports.length) console.log('ready');
  });
}
