// Name and label validation with Kubernetes' rules; returns Status causes (empty = valid).
import type { StatusCause } from './errors.js';
import type { KubeObject, NameRule } from './types.js';

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

export function nameProblem(name: string, rule: NameRule): string | undefined {
  switch (rule) {
    case 'label':
      if (name.length > 63) return 'must be no more than 63 characters';
      return LABEL.test(name) ? undefined
        : "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
    case 'label1035':
      if (name.length > 63) return 'must be no more than 63 characters';
      return LABEL_1035.test(name) ? undefined
        : "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
    case 'subdomain':
      if (name.length > 253) return 'must be no more than 253 characters';
      return SUBDOMAIN.test(name) ? undefined
        : "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
  }
}

export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const [prefix, name] = slash >= 0 ? [key.slice(0, slash), key.slice(slash + 1)] : [undefined, key];
  if (prefix !== undefined && (prefix.length === 0 || nameProblem(prefix, 'subdomain'))) return 'prefix part must be a lowercase RFC 1123 subdomain';
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)";
  }
  return undefined;
}

export function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63 || !QUALIFIED_NAME.test(value)) {
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)";
  }
  return undefined;
}

const invalidValue = (field: string, value: unknown, detail: string): StatusCause => ({
  reason: 'FieldValueInvalid', field, message: `Invalid value: ${JSON.stringify(value)}: ${detail}`,
});

/** Metadata checks shared by every kind (spec contents are not validated). */
export function validateMeta(obj: KubeObject, rule: NameRule, namespaced: boolean): StatusCause[] {
  const causes: StatusCause[] = [];
  const m = obj.metadata;
  if (!m.name) {
    causes.push({ reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name or generateName is required' });
  } else {
    const p = nameProblem(m.name, rule);
    if (p) causes.push(invalidValue('metadata.name', m.name, p));
  }
  if (namespaced) {
    if (!m.namespace) causes.push({ reason: 'FieldValueRequired', field: 'metadata.namespace', message: 'Required value' });
    else if (nameProblem(m.namespace, 'label')) causes.push(invalidValue('metadata.namespace', m.namespace, nameProblem(m.namespace, 'label')!));
  } else if (m.namespace) {
    causes.push({ reason: 'FieldValueForbidden', field: 'metadata.namespace', message: 'Forbidden: not allowed on this type' });
  }
  for (const [field, map] of [['metadata.labels', m.labels], ['metadata.annotations', m.annotations]] as const) {
    if (map === undefined || map === null) continue;
    if (typeof map !== 'object' || Array.isArray(map)) { causes.push(invalidValue(field, map, 'must be a map of strings')); continue; }
    for (const [k, v] of Object.entries(map)) {
      const kp = labelKeyProblem(k);
      if (kp) causes.push(invalidValue(field, k, kp));
      if (typeof v !== 'string') causes.push(invalidValue(`${field}[${k}]`, v, 'must be a string'));
      else if (field === 'metadata.labels' && labelValueProblem(v)) causes.push(invalidValue(`${field}`, v, labelValueProblem(v)!));
    }
  }
  return causes;
}
