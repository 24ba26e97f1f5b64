// Shared types for the embedded API server: JSON values, Kubernetes object shapes, resource types.

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject { [key: string]: JsonValue }

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: JsonObject;
  subresource?: string;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  managedFields?: ManagedFieldsEntry[];
}

/** A stored object: always has apiVersion, kind and metadata.name (namespace when namespaced). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

export type NameRule = 'subdomain' | 'label' | 'label1035';

/** One served resource (one kind in one group/version). */
export interface ResourceType {
  group: string; // '' for core
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  /** Has a /status subresource: the main endpoint ignores .status, /status changes only .status. */
  hasStatus: boolean;
  shortNames?: string[];
  /** How metadata.name is validated. */
  nameRule: NameRule;
  /** Extra field-selector paths supported besides metadata.name / metadata.namespace. */
  fieldSelectors?: string[];
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One change, as recorded in the event history and fanned out to watchers. */
export interface StoreEvent {
  rv: number;
  type: WatchEventType;
  resource: ResourceType;
  object: KubeObject;
  /** The object before the change (MODIFIED only): lets selector watches turn a change into ADDED/DELETED. */
  previous?: KubeObject;
}

export const isObject = (v: unknown): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export const apiVersionOf = (rt: ResourceType): string => (rt.group ? `${rt.group}/${rt.version}` : rt.version);

export const clone = <T>(v: T): T => structuredClone(v);
