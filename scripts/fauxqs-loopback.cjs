'use strict';
// Preload for fauxqs (node --require scripts/fauxqs-loopback.cjs): fauxqs always listens on 0.0.0.0; this forces
// every server in the process onto the loopback address (FAUXQS_LISTEN_HOST, default 127.0.0.1) and prints
// "fauxqs-loopback: listening on <host>:<port>" once listening, so a caller that asked for port 0 learns the port.
const net = require('node:net');

const loopbackHost = process.env.FAUXQS_LISTEN_HOST || '127.0.0.1';
const wildcard = new Set([undefined, null, '', '0.0.0.0', '::', '[::]', 'localhost']);
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function patchedListen(...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && first.path === undefined && first.fd === undefined && first._handle === undefined && !(first instanceof net.Server)) {
    args[0] = { ...first, host: wildcard.has(first.host) ? loopbackHost : first.host };
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] === 'string') {
      args[1] = wildcard.has(args[1]) ? loopbackHost : args[1];
    } else {
      args.splice(1, 0, loopbackHost);
    }
  }

  this.once('listening', () => {
    const address = this.address();
    if (address && typeof address === 'object') {
      process.stdout.write(`fauxqs-loopback: listening on ${address.address}:${address.port}\n`);
    }
  });
  return listen.apply(this, args);
};
