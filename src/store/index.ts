// The object store named by the configuration (DESIGN §6: STORE, STORE_DIR, GCS_BUCKET, GCS_API_ENDPOINT).

import { GcsStore, type GcsStoreOptions } from './gcs.js';
import { LocalStore } from './local.js';
import { StoreError, type ObjectStore } from './types.js';

export { GcsStore, GCS_DEFAULTS, type GcsStoreOptions } from './gcs.js';
export { LocalStore } from './local.js';
export { validateObjectName, validatePrefix } from './names.js';
export { ObjectNotFoundError, StoreError, type ObjectStore, type PutMeta, type StoredObject } from './types.js';

export interface StoreConfig {
  STORE: string;
  STORE_DIR?: string;
  GCS_BUCKET?: string;
  /** Empty or unset: the real service. */
  GCS_API_ENDPOINT?: string;
}

/**
 * Builds the configured store. Throws StoreError(retryable=false) naming the setting at fault.
 * `gcs` overrides client options the environment does not carry (credentials, timeouts, …).
 */
export function createStore(config: StoreConfig, gcs: Partial<GcsStoreOptions> = {}): ObjectStore {
  switch (config.STORE) {
    case 'local': {
      const dir = (config.STORE_DIR ?? '').trim();
      if (dir === '') throw new StoreError('STORE=local needs STORE_DIR (the store directory)', false);
      return new LocalStore(dir);
    }
    case 'gcs': {
      const bucket = (config.GCS_BUCKET ?? '').trim();
      if (bucket === '') throw new StoreError('STORE=gcs needs GCS_BUCKET', false);
      const endpoint = (config.GCS_API_ENDPOINT ?? '').trim();
      try {
        return new GcsStore({ ...gcs, bucket, ...(endpoint ? { apiEndpoint: endpoint } : {}) });
      } catch (e) {
        throw new StoreError(`bad GCS_BUCKET/GCS_API_ENDPOINT: ${(e as Error).message}`, false, { cause: e });
      }
    }
    default:
      throw new StoreError(`STORE must be "local" or "gcs", got ${JSON.stringify(config.STORE)}`, false);
  }
}
