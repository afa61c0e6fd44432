// The slice of the WebAssembly JS API this project uses (@types/node 20 does not declare it,
// and pulling in the DOM lib would admit browser globals).
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
    static imports(m: Module): { module: string; name: string; kind: string }[];
    static exports(m: Module): { name: string; kind: string }[];
  }
  class Instance {
    constructor(module: Module, imports: Record<string, unknown>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
  class Global {
    value: number;
  }
}
