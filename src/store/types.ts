// The object store seen by the uploader (and by speaker-sample jobs, which read chunks back).
// Implementations: LocalStore (embedded default, a directory) and GcsStore (@google-cloud/storage).

export interface PutMeta {
  contentType: string;
  /** Custom metadata stored with the object (codec, sample_rate, frames, duration, sha256, …). */
  metadata: Record<string, string>;
  /** Exact byte size of the file; the upload is confirmed only if the store reports the same. */
  size: number;
  /** Hex sha256 of the content; the upload is confirmed only if the stored content matches. */
  sha256: string;
}

export interface StoredObject {
  name: string;
  size: number;
  metadata: Record<string, string>;
  /** The object's content type, when the store knows it. */
  contentType?: string;
}

export interface ObjectStore {
  readonly kind: 'local' | 'gcs';
  /**
   * Uploads the file at `path` as object `name`. Resolves only after the store has confirmed the
   * object (size and checksum verified); rejects on any doubt, so the caller keeps its copy and
   * retries. Idempotent: putting the same content again succeeds.
   */
  putFile(name: string, path: string, meta: PutMeta): Promise<StoredObject>;
  /** The object's size and metadata, or null when it does not exist. */
  stat(name: string): Promise<StoredObject | null>;
  /** Objects whose names start with `prefix`, sorted by name. */
  list(prefix: string): Promise<StoredObject[]>;
  /** The object's bytes; rejects with ObjectNotFoundError when it does not exist. */
  read(name: string): Promise<Buffer>;
}

/** Thrown for errors that retrying cannot fix (bad name, bad credentials): surfaced, still retried slowly. */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly retryable = true,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** `read` of an object that does not exist (not retryable: the object will not appear by itself). */
export class ObjectNotFoundError extends StoreError {
  constructor(readonly objectName: string) {
    super(`object not found: ${objectName}`, false);
  }
}
