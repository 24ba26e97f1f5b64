// Kubernetes Status errors: ApiError carries the HTTP code, reason and details of a metav1.Status.
import type { ResourceType } from './types.js';

export interface StatusCause { reason?: string; message?: string; field?: string }
export interface StatusDetails { name?: string; group?: string; kind?: string; causes?: StatusCause[] }
export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message: string;
  reason: string;
  details?: StatusDetails;
  code: number;
}

export class ApiError extends Error {
  constructor(readonly code: number, readonly reason: string, message: string, readonly details?: StatusDetails) {
    super(message);
  }

  toStatus(): Status {
    const s: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, code: this.code };
    if (this.details) s.details = this.details;
    return s;
  }
}

const qualified = (rt: ResourceType): string => (rt.group ? `${rt.plural}.${rt.group}` : rt.plural);

export const notFound = (rt: ResourceType, name: string): ApiError =>
  new ApiError(404, 'NotFound', `${qualified(rt)} "${name}" not found`, { name, group: rt.group, kind: rt.plural });

export const alreadyExists = (rt: ResourceType, name: string): ApiError =>
  new ApiError(409, 'AlreadyExists', `${qualified(rt)} "${name}" already exists`, { name, group: rt.group, kind: rt.plural });

export const conflict = (rt: ResourceType, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again'): ApiError =>
  new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(rt)} "${name}": ${why}`, { name, group: rt.group, kind: rt.plural });

export const invalid = (rt: ResourceType, name: string, causes: StatusCause[]): ApiError =>
  new ApiError(422, 'Invalid', `${rt.kind} "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`, {
    name, group: rt.group, kind: rt.kind, causes,
  });

export const badRequest = (message: string): ApiError => new ApiError(400, 'BadRequest', message);

export const methodNotAllowed = (message: string): ApiError => new ApiError(405, 'MethodNotAllowed', message);

export const gone = (message: string): ApiError => new ApiError(410, 'Expired', message);

export const unauthorized = (): ApiError => new ApiError(401, 'Unauthorized', 'Unauthorized');

export const pathNotFound = (path: string): ApiError => new ApiError(404, 'NotFound', `the server could not find the requested resource (${path})`, {});
