// Label and field selectors: parsing (Kubernetes grammar) and matching.
import { badRequest } from './errors.js';
import type { KubeObject, ResourceType } from './types.js';
import { isObject } from './types.js';
import { labelKeyProblem, labelValueProblem } from './validation.js';

export type LabelRequirement =
  | { key: string; op: 'exists' | '!exists' }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: '=' | '!='; value: string };

export interface LabelSelector { requirements: LabelRequirement[] }

function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) { parts.push(cur); cur = ''; continue; }
    cur += ch;
  }
  parts.push(cur);
  return parts;
}

function checkKey(key: string, raw: string): void {
  const p = labelKeyProblem(key);
  if (p) throw badRequest(`unable to parse requirement: invalid label key "${key}": ${p} (in "${raw}")`);
}
function checkValue(value: string, raw: string): void {
  const p = labelValueProblem(value);
  if (p) throw badRequest(`unable to parse requirement: invalid label value: "${value}": ${p} (in "${raw}")`);
}

/** Parse a `labelSelector` query value; throws 400 BadRequest on bad syntax. */
export function parseLabelSelector(raw: string | null | undefined): LabelSelector {
  const requirements: LabelRequirement[] = [];
  if (!raw || !raw.trim()) return { requirements };
  for (const part0 of splitTopLevel(raw)) {
    const part = part0.trim();
    if (!part) throw badRequest(`unable to parse requirement: found '', expected: identifier (in "${raw}")`);
    let m: RegExpMatchArray | null;
    if ((m = part.match(/^!\s*([^\s=!(),]+)$/))) {
      checkKey(m[1]!, raw);
      requirements.push({ key: m[1]!, op: '!exists' });
    } else if ((m = part.match(/^([^\s=!(),]+)\s+(in|notin)\s*\(([^()]*)\)$/))) {
      checkKey(m[1]!, raw);
      const values = m[3]!.split(',').map((v) => v.trim());
      if (values.length === 1 && values[0] === '' ) throw badRequest(`unable to parse requirement: for 'in', 'notin' operators, values set can't be empty (in "${raw}")`);
      values.forEach((v) => checkValue(v, raw));
      requirements.push({ key: m[1]!, op: m[2] as 'in' | 'notin', values });
    } else if ((m = part.match(/^([^\s=!(),]+)\s*(==|=|!=)\s*([^\s=!(),]*)$/))) {
      checkKey(m[1]!, raw);
      checkValue(m[3]!, raw);
      requirements.push({ key: m[1]!, op: m[2] === '!=' ? '!=' : '=', value: m[3]! });
    } else if ((m = part.match(/^([^\s=!(),]+)$/))) {
      checkKey(m[1]!, raw);
      requirements.push({ key: m[1]!, op: 'exists' });
    } else {
      throw badRequest(`unable to parse requirement: "${part}" (in "${raw}")`);
    }
  }
  return { requirements };
}

export function matchLabels(sel: LabelSelector, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return sel.requirements.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'exists': return has;
      case '!exists': return !has;
      case '=': return has && v === r.value;
      case '!=': return !has || v !== r.value;
      case 'in': return has && r.values.includes(v!);
      case 'notin': return !has || !r.values.includes(v!);
    }
  });
}

/** Does a plain `map[string]string` selector (Service .spec.selector) match these labels? */
export function matchMapSelector(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

export interface FieldRequirement { field: string; op: '=' | '!='; value: string }
export interface FieldSelector { requirements: FieldRequirement[] }

function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\' && i + 1 < s.length) { cur += ch + s[i + 1]; i++; continue; }
    if (ch === sep) { out.push(cur); cur = ''; continue; }
    cur += ch;
  }
  out.push(cur);
  return out;
}
const unescape = (s: string): string => s.replace(/\\(.)/g, '$1');

/** Parse a `fieldSelector` for a resource; unsupported fields are 400 BadRequest like the real server. */
export function parseFieldSelector(raw: string | null | undefined, rt: ResourceType): FieldSelector {
  const requirements: FieldRequirement[] = [];
  if (!raw || !raw.trim()) return { requirements };
  const allowed = new Set(['metadata.name', 'metadata.namespace', ...(rt.fieldSelectors ?? [])]);
  for (const part of splitUnescaped(raw, ',')) {
    const m = part.match(/^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)(.*)$/);
    if (!m) throw badRequest(`invalid selector: '${raw}'; can't understand '${part}'`);
    const field = m[1]!;
    if (!allowed.has(field)) throw badRequest(`field label not supported: ${field}`);
    requirements.push({ field, op: m[2] === '!=' ? '!=' : '=', value: unescape(m[3]!.trim()) });
  }
  return { requirements };
}

function fieldValue(obj: KubeObject, path: string): string {
  let cur: unknown = obj;
  for (const seg of path.split('.')) {
    if (!isObject(cur) && !(typeof cur === 'object' && cur !== null)) return '';
    cur = (cur as Record<string, unknown>)[seg];
  }
  if (cur === undefined || cur === null) return '';
  return typeof cur === 'string' ? cur : String(cur);
}

export function matchFields(sel: FieldSelector, obj: KubeObject): boolean {
  return sel.requirements.every((r) => (fieldValue(obj, r.field) === r.value) === (r.op === '='));
}

/** Both selectors together, as a predicate. */
export function objectFilter(labels: LabelSelector, fields: FieldSelector): (o: KubeObject) => boolean {
  if (labels.requirements.length === 0 && fields.requirements.length === 0) return () => true;
  return (o) => matchLabels(labels, o.metadata.labels) && matchFields(fields, o);
}
