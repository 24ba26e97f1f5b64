// HTTP POST of the add event to the node agent over its unix socket, with one overall deadline.
import { request } from 'node:http';
import { CNI_ADD_EVENT_PATH, type CniPluginAddEvent } from '../protocol.js';

export class AgentUnreachableError extends Error {}
export class AgentRejectedError extends Error {
  constructor(readonly status: number, readonly body: string) {
    super(`node agent answered ${status}${body ? `: ${body}` : ''}`);
  }
}

const MAX_BODY = 64 * 1024;

export function sendAddEvent(socketPath: string, event: CniPluginAddEvent, timeoutMs: number): Promise<void> {
  const body = Buffer.from(JSON.stringify(event));
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const req = request({
      socketPath,
      path: CNI_ADD_EVENT_PATH,
      method: 'POST',
      host: 'unix',
      headers: { 'content-type': 'application/json', 'content-length': body.length },
      agent: false,
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < MAX_BODY) chunks.push(c);
        size += c.length;
      });
      res.on('error', (e) => finish(new AgentUnreachableError(`reading the response failed: ${e.message}`)));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) finish();
        else finish(new AgentRejectedError(status, Buffer.concat(chunks).toString('utf8').slice(0, MAX_BODY).trim()));
      });
    });
    const timer = setTimeout(() => {
      finish(new AgentUnreachableError(`no answer within ${timeoutMs} ms`));
      req.destroy();
    }, timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => finish(new AgentUnreachableError(e.code ? `${e.code}: ${e.message}` : e.message)));
    req.end(body);
  });
}
