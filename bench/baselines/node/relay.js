// Baseline N for kefu-bench: the WebSocket relay a small team would write in
// Node.js with the `ws` package, no persistence. It speaks the subset of the
// Kefu protocol the bench uses: hello -> welcome, send -> ack to the sender
// and message to every agent connection, ping -> pong. Tokens are not
// checked: "agent..." is an agent, anything else a visitor. Seqs are
// counted per conversation in memory.
//
// Usage: node relay.js HOST PORT   (prints "listening HOST:PORT" when bound)
'use strict';

const { WebSocketServer } = require('ws');

const host = process.argv[2] || '127.0.0.1';
const port = Number(process.argv[3] || 0);
const agents = new Map();
const seqs = new Map();
let nextId = 0;

const wss = new WebSocketServer({ host, port, maxPayload: 64 * 1024, perMessageDeflate: false });
wss.on('listening', () => {
  const address = wss.address();
  console.log(`listening ${address.address}:${address.port}`);
});
wss.on('connection', (ws, request) => {
  request.socket.setNoDelay(true);
  const id = nextId++;
  let role = null;
  ws.on('message', (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (_) {
      return;
    }
    if (role === null) {
      if (frame.type !== 'hello') return ws.close(4401);
      role = String(frame.token || '').startsWith('agent') ? 'agent' : 'visitor';
      if (role === 'agent') agents.set(id, ws);
      ws.send(JSON.stringify({ type: 'welcome', role, id: String(id) }));
      return;
    }
    if (frame.type === 'ping') return ws.send('{"type":"pong"}');
    if (frame.type !== 'send') return;
    const conversation = String(frame.conversation_id);
    const seq = (seqs.get(conversation) || 0) + 1;
    seqs.set(conversation, seq);
    const message = JSON.stringify({
      id: `${conversation}-${seq}`,
      conversation_id: conversation,
      seq,
      client_msg_id: frame.client_msg_id,
      kind: 'text',
      sender: { type: role, id: String(id), name: '' },
      content: frame.content,
      meta: frame.meta,
      created_at: Date.now(),
    });
    ws.send(`{"type":"ack","client_msg_id":${JSON.stringify(frame.client_msg_id)},"message":${message}}`);
    const out = `{"type":"message","message":${message}}`;
    for (const [agentId, agent] of agents) {
      if (agentId !== id) agent.send(out);
    }
  });
  ws.on('close', () => agents.delete(id));
  ws.on('error', () => {});
});
