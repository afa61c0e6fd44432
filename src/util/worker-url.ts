// Worker entry points live in workers/. Running from source (tests, tsx) they are .ts files,
// from the compiled build (dist/) .js files; this module sits at the same depth in both trees.
const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

export function workerUrl(name: string): URL {
  return new URL(`../../workers/${name}${ext}`, import.meta.url);
}
