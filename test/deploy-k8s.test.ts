// deploy/k8s: every manifest is valid against the Kubernetes schemas (kubernetes-models), and the
// manifests agree with the service itself: the environment they give the container is a valid
// configuration (src/config.ts), its port is the one the probes, services and scrape annotation
// use, the grace period outlasts preStop + DRAIN_TIMEOUT_S, SHARDS follows the CPU limit, the
// volume holds SPOOL_MAX_BYTES. Mutated copies prove each check can fail.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { loadConfig, parseBytes } from '../src/config.js';

const root = join(import.meta.dirname, '..');
const dir = join(root, 'deploy/k8s');

// Manifests are untyped YAML; these checks are what types them.
type Obj = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const MODELS: Record<string, new (o: Obj) => { validate(): void }> = {
  'apps/v1/StatefulSet': StatefulSet,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/ServiceAccount': ServiceAccount,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
};

/**
 * kubernetes-models' validators check types and required fields but let unknown fields through
 * (a typo such as `terminationGracePeriod` would pass, then be refused by kubectl's strict field
 * validation). Its TypeScript interfaces know every field: each manifest becomes an object
 * literal typed with its interface, and the compiler's excess-property check finds the rest.
 */
function unknownFields(docs: { file: string; obj: Obj }[]): string[] {
  const lines: string[] = [];
  const files: string[] = [];
  for (const { file, obj } of docs) {
    const key = `${obj.apiVersion}/${obj.kind}`;
    if (!MODELS[key]) continue;
    const n = files.length;
    lines.push(`import type { I${obj.kind} as T${n} } from 'kubernetes-models/${key}';`, `export const m${n}: T${n} = ${JSON.stringify(obj)};`);
    files.push(file, file);
  }
  const name = join(root, 'test', '__deploy-k8s-manifests__.ts'); // never written: served by the host below
  const text = lines.join('\n');
  const options: ts.CompilerOptions = { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true, skipLibCheck: true, types: [] };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (f, v, ...rest) => (f === name ? ts.createSourceFile(f, text, v) : getSourceFile.call(host, f, v, ...rest));
  host.fileExists = (f) => f === name || fileExists.call(host, f);
  host.readFile = (f) => (f === name ? text : readFile.call(host, f));
  const program = ts.createProgram([name], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    return `${files[line] ?? '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

function loadManifests(): { file: string; obj: Obj }[] {
  const out: { file: string; obj: Obj }[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]!.message}`);
      out.push({ file, obj: doc.toJSON() });
    }
  }
  return out;
}

/** Kubernetes quantities: "2", "500m", "512Mi", "1Gi", "10G". */
function quantity(q: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * unit;
}

const byKind = (objs: Obj[], kind: string): Obj[] => objs.filter((o) => o.kind === kind);
const single = (objs: Obj[], kind: string): Obj => {
  const found = byKind(objs, kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0];
};
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The container's environment as the kubelet would build it (secrets: placeholders). */
function containerEnv(container: Obj, objs: Obj[]): Record<string, string> {
  const env: Record<string, string> = {};
  const configMaps = new Map(byKind(objs, 'ConfigMap').map((c) => [c.metadata.name, c.data ?? {}]));
  for (const e of container.env ?? []) {
    const from = e.valueFrom;
    if (!from) env[e.name] = String(e.value);
    else if (from.configMapKeyRef) {
      const v = configMaps.get(from.configMapKeyRef.name)?.[from.configMapKeyRef.key];
      if (v === undefined) throw new Error(`${e.name}: no key ${from.configMapKeyRef.key} in ConfigMap ${from.configMapKeyRef.name}`);
      env[e.name] = String(v);
    } else if (from.secretKeyRef) env[e.name] = 'secret-placeholder-'.padEnd(48, 'x');
    else if (from.resourceFieldRef) {
      const q = container.resources?.[from.resourceFieldRef.resource.split('.')[0]]?.[from.resourceFieldRef.resource.split('.')[1]];
      if (q === undefined) throw new Error(`${e.name}: the container sets no ${from.resourceFieldRef.resource}`);
      env[e.name] = String(Math.ceil(quantity(q) / quantity(from.resourceFieldRef.divisor ?? '1')));
    } else throw new Error(`${e.name}: unsupported valueFrom`);
  }
  return env;
}

/** Everything that must agree between the manifests and the service; empty when all do. */
function problems(objs: Obj[]): string[] {
  const out: string[] = [];
  const check = (ok: boolean, what: string) => void (ok || out.push(what));
  const sts = single(objs, 'StatefulSet');
  const pod = sts.spec.template.spec;
  const c = pod.containers[0];
  const env = containerEnv(c, objs);
  let cfg: ReturnType<typeof loadConfig>;
  try {
    cfg = loadConfig(env);
  } catch (err) {
    return [`the container's environment is not a valid configuration: ${(err as Error).message}`];
  }
  const ports = new Map<string | number, number>((c.ports ?? []).flatMap((p: Obj) => [[p.name, p.containerPort], [p.containerPort, p.containerPort]]));
  const portOf = (p: string | number) => ports.get(p) ?? (typeof p === 'number' ? p : NaN);
  check(ports.get('http') === cfg.PORT, `container port http (${ports.get('http')}) is not PORT (${cfg.PORT})`);
  for (const [probe, path] of [['readinessProbe', '/readyz'], ['livenessProbe', '/healthz'], ['startupProbe', '/healthz']] as const) {
    const p = c[probe]?.httpGet;
    check(p?.path === path, `${probe} path ${p?.path} is not ${path}`);
    check(portOf(p?.port) === cfg.PORT, `${probe} port ${p?.port} is not PORT (${cfg.PORT})`);
  }
  const labels = sts.spec.template.metadata.labels;
  check(matches(sts.spec.selector.matchLabels, labels), 'the StatefulSet selector does not match its pods');
  for (const svc of byKind(objs, 'Service')) {
    check(matches(svc.spec.selector, labels), `Service ${svc.metadata.name} selects no pod`);
    for (const p of svc.spec.ports) check(portOf(p.targetPort) === cfg.PORT, `Service ${svc.metadata.name} targets port ${p.targetPort}, not PORT (${cfg.PORT})`);
  }
  const headless = byKind(objs, 'Service').find((s) => s.metadata.name === sts.spec.serviceName);
  check(headless?.spec.clusterIP === 'None', `serviceName ${sts.spec.serviceName} is not a headless Service`);

  const ann = sts.spec.template.metadata.annotations ?? {};
  check(ann['prometheus.io/scrape'] === 'true', 'pods are not marked prometheus.io/scrape');
  check(Number(ann['prometheus.io/port']) === cfg.PORT, `prometheus.io/port ${ann['prometheus.io/port']} is not PORT (${cfg.PORT})`);
  check(ann['prometheus.io/path'] === '/metrics', `prometheus.io/path ${ann['prometheus.io/path']} is not /metrics`);

  const pre = c.lifecycle?.preStop?.exec?.command ?? [];
  const preStopS = /sleep$/.test(pre[0] ?? '') ? Number(pre[1]) : 0;
  check(preStopS > 0, 'no preStop sleep: endpoints would still send clients to a pod that is draining');
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  check(grace >= preStopS + cfg.DRAIN_TIMEOUT_S + 5, `terminationGracePeriodSeconds ${grace} < preStop ${preStopS} + DRAIN_TIMEOUT_S ${cfg.DRAIN_TIMEOUT_S} + 5 s to exit`);

  const cpuLimit = c.resources?.limits?.cpu;
  check(cpuLimit !== undefined && cfg.SHARDS === Math.ceil(quantity(cpuLimit)), `SHARDS ${cfg.SHARDS} does not match the CPU limit ${cpuLimit}`);
  for (const r of ['cpu', 'memory']) {
    const req = c.resources?.requests?.[r];
    const lim = c.resources?.limits?.[r];
    check(req !== undefined && lim !== undefined && quantity(req) <= quantity(lim), `${r}: request ${req} and limit ${lim} (both set, request ≤ limit)`);
  }
  const claim = sts.spec.volumeClaimTemplates?.[0];
  const mount = c.volumeMounts?.find((m: Obj) => m.name === claim?.metadata.name);
  check(mount?.mountPath === cfg.SPOOL_DIR, `SPOOL_DIR ${cfg.SPOOL_DIR} is not the claim's mount (${mount?.mountPath})`);
  const storage = claim ? quantity(claim.spec.resources.requests.storage) : 0;
  check(storage > cfg.SPOOL_MAX_BYTES, `the spool volume (${storage} B) does not hold SPOOL_MAX_BYTES (${cfg.SPOOL_MAX_BYTES} B)`);
  check(cfg.STORE === 'gcs', `STORE is ${cfg.STORE}: pods need a shared object store`);

  const uid = /^USER (\d+)/m.exec(readFileSync(join(root, 'deploy/Dockerfile'), 'utf8'))?.[1];
  check(String(pod.securityContext?.runAsUser) === uid && String(pod.securityContext?.fsGroup) === uid, `runAsUser/fsGroup are not the image's USER ${uid}`);
  check(pod.securityContext?.runAsNonRoot === true, 'runAsNonRoot is not set');

  const hpa = single(objs, 'HorizontalPodAutoscaler');
  check(hpa.spec.scaleTargetRef.kind === 'StatefulSet' && hpa.spec.scaleTargetRef.name === sts.metadata.name, 'the HPA does not scale the StatefulSet');
  check(hpa.spec.metrics.some((m: Obj) => m.resource?.name === 'cpu'), 'the HPA does not scale on CPU');
  const pdb = single(objs, 'PodDisruptionBudget');
  check(matches(pdb.spec.selector.matchLabels, labels), 'the PodDisruptionBudget selects no pod');
  check(pod.serviceAccountName === undefined || byKind(objs, 'ServiceAccount').some((s) => s.metadata.name === pod.serviceAccountName), `ServiceAccount ${pod.serviceAccountName} is not defined`);
  return out;
}

const manifests = loadManifests();
const objs = manifests.map((m) => m.obj);
const copy = (): Obj[] => structuredClone(objs);
const stsOf = (o: Obj[]) => single(o, 'StatefulSet');
const containerOf = (o: Obj[]) => stsOf(o).spec.template.spec.containers[0];

t.test('every manifest is valid against the Kubernetes schemas', async (t) => {
  t.ok(manifests.length >= 7, `${manifests.length} objects`);
  for (const { file, obj } of manifests) {
    const key = `${obj.apiVersion}/${obj.kind}`;
    if (key === 'kustomize.config.k8s.io/v1beta1/Kustomization') continue;
    const Model = MODELS[key];
    if (!Model) {
      t.fail(`${file}: no schema model for ${key}`);
      continue;
    }
    t.doesNotThrow(() => new Model(obj).validate(), `${file}: ${key} ${obj.metadata?.name}`);
  }
  const kinds = objs.map((o) => o.kind).sort();
  t.same(kinds, ['ConfigMap', 'HorizontalPodAutoscaler', 'Kustomization', 'PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount', 'StatefulSet']);
  // The validator is not a rubber stamp: a wrong type or an unknown field fails.
  const bad = copy();
  containerOf(bad).ports[0].containerPort = 'eighty';
  t.throws(() => new StatefulSet(stsOf(bad)).validate(), 'a string port fails the schema');
  const nameless = copy();
  delete containerOf(nameless).name;
  t.throws(() => new StatefulSet(stsOf(nameless)).validate(), 'a missing required field fails the schema');
  // One compilation (seconds) for the manifests and a mutated copy with a misspelt field.
  const typo = stsOf(copy());
  typo.spec.template.spec.terminationGracePeriod = 45;
  const found = unknownFields([...manifests, { file: 'mutated copy', obj: typo }]);
  t.same(found.filter((f) => !f.startsWith('mutated copy:')), [], 'no field the Kubernetes API does not know');
  t.match(found.join('\n'), /mutated copy: .*terminationGracePeriod\W+ does not exist in type 'IPodSpec'/, 'a misspelt field is found');
});

t.test('the kustomization lists every manifest, and the image is this version', async (t) => {
  const k = single(objs, 'Kustomization');
  const files = [...new Set(manifests.map((m) => m.file))].filter((f) => f !== 'kustomization.yaml').sort();
  t.same([...k.resources].sort(), files);
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  t.equal(k.images[0].newTag, version, 'image tag = package.json version');
  t.equal(containerOf(objs).image.split(':')[0], k.images[0].name, 'kustomize rewrites the container image');
});

t.test('the manifests agree with the service', async (t) => {
  t.same(problems(objs), [], 'no disagreement');
  const env = containerEnv(containerOf(objs), objs);
  const cfg = loadConfig(env);
  t.equal(cfg.PORT, loadConfig({}).PORT, 'the pods listen on the default PORT');
  t.equal(cfg.SHARDS, 2, 'SHARDS from limits.cpu');
  t.equal(cfg.GCS_BUCKET, single(objs, 'ConfigMap').data.GCS_BUCKET, 'GCS_BUCKET from the ConfigMap');
  t.equal(cfg.SPOOL_MAX_BYTES, parseBytes('10GiB'));
  t.ok(containerOf(objs).env.some((e: Obj) => e.name === 'AUTH_SECRET' && e.valueFrom?.secretKeyRef), 'AUTH_SECRET from a Secret');
});

t.test('each check fails when the manifests disagree', async (t) => {
  const cases: [string, (o: Obj[]) => void, RegExp][] = [
    ['wrong container port', (o) => void (containerOf(o).ports[0].containerPort = 8081), /container port http \(8081\) is not PORT \(8080\)/],
    ['probe on another port', (o) => void (containerOf(o).readinessProbe.httpGet.port = 9090), /readinessProbe port 9090/],
    ['liveness on /readyz', (o) => void (containerOf(o).livenessProbe.httpGet.path = '/readyz'), /livenessProbe path \/readyz is not \/healthz/],
    ['grace period too short', (o) => void (stsOf(o).spec.template.spec.terminationGracePeriodSeconds = 30), /terminationGracePeriodSeconds 30 < preStop 5 \+ DRAIN_TIMEOUT_S 30/],
    ['a longer drain', (o) => void (containerOf(o).env.find((e: Obj) => e.name === 'DRAIN_TIMEOUT_S').value = '60'), /terminationGracePeriodSeconds 45 < preStop 5 \+ DRAIN_TIMEOUT_S 60/],
    ['no preStop', (o) => void delete containerOf(o).lifecycle, /no preStop sleep/],
    ['scrape port', (o) => void (stsOf(o).spec.template.metadata.annotations['prometheus.io/port'] = '9100'), /prometheus.io\/port 9100/],
    ['SHARDS fixed apart from the limit', (o) => void (containerOf(o).env[0] = { name: 'SHARDS', value: '8' }), /SHARDS 8 does not match the CPU limit 2/],
    ['volume smaller than the spool', (o) => void (stsOf(o).spec.volumeClaimTemplates[0].spec.resources.requests.storage = '5Gi'), /does not hold SPOOL_MAX_BYTES/],
    ['spool off the volume', (o) => void (containerOf(o).env.find((e: Obj) => e.name === 'SPOOL_DIR').value = '/tmp/spool'), /SPOOL_DIR \/tmp\/spool is not the claim's mount/],
    ['an invalid setting', (o) => void (single(o, 'ConfigMap').data.AUTH_MODE = 'oauth'), /not a valid configuration: .*AUTH_MODE/],
    ['a key missing from the ConfigMap', (o) => void delete single(o, 'ConfigMap').data.GCS_BUCKET, /no key GCS_BUCKET in ConfigMap/],
    ['running as root', (o) => void (stsOf(o).spec.template.spec.securityContext.runAsUser = 0), /runAsUser\/fsGroup are not the image's USER 10001/],
    ['request over limit', (o) => void (containerOf(o).resources.requests.memory = '3Gi'), /memory: request 3Gi and limit 2Gi/],
  ];
  for (const [name, mutate, want] of cases) {
    const o = copy();
    mutate(o);
    let got: string[];
    try {
      got = problems(o);
    } catch (err) {
      got = [(err as Error).message];
    }
    t.match(got.join('\n'), want, name);
  }
  const o = copy();
  byKind(o, 'Service').find((s) => s.metadata.name === 'lc3-pusher').spec.ports[0].targetPort = 8000;
  t.match(problems(o).join('\n'), /Service lc3-pusher targets port 8000, not PORT \(8080\)/, 'a Service targeting another port');
  t.same(problems(objs), [], 'the mutations touched copies only');
});
