// Reference WebSocket echo server on npm's `ws` (bench/e2e only). Prints "listening on HOST:PORT".
const { WebSocketServer } = require('ws');
const port = parseInt(process.argv[2] || '0', 10);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 16 << 20 });
wss.on('listening', () => console.log(`listening on 127.0.0.1:${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
