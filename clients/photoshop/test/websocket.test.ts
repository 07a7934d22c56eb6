import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withReadyStates } from '../src/api/websocket.ts';

/** Like UXP's WebSocket: an instance readyState, no static constants. */
class UxpLikeSocket {
  readyState = 0;
  constructor(
    readonly url: string,
    readonly protocol?: string,
  ) {}
}

test('the wrapped constructor has the standard constants and still makes the original sockets', () => {
  assert.equal('OPEN' in UxpLikeSocket, false);
  const Wrapped = withReadyStates(UxpLikeSocket);
  assert.deepEqual([Wrapped.CONNECTING, Wrapped.OPEN, Wrapped.CLOSING, Wrapped.CLOSED], [0, 1, 2, 3]);
  assert.ok('OPEN' in Wrapped && 'CLOSED' in Wrapped && 'constructor' in Wrapped);
  const socket = new Wrapped('ws://127.0.0.1:4000/graphql', 'graphql-transport-ws');
  assert.ok(socket instanceof UxpLikeSocket);
  assert.equal(socket.url, 'ws://127.0.0.1:4000/graphql');
  assert.equal(socket.protocol, 'graphql-transport-ws');
});

test('a WebSocket that has the constants is passed through as it is', () => {
  class Standard extends UxpLikeSocket {
    static readonly CONNECTING = 0;
    static readonly OPEN = 1;
    static readonly CLOSING = 2;
    static readonly CLOSED = 3;
  }
  assert.equal(withReadyStates(Standard), Standard);
});
