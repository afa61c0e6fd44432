import t from 'tap';
import { join } from 'node:path';
import { createStore, GcsStore, LocalStore, StoreError, type StoreConfig } from '../src/store/index.js';

t.test('STORE=local', async (t) => {
  const dir = t.testdir();
  const s = createStore({ STORE: 'local', STORE_DIR: join(dir, 'store'), GCS_BUCKET: '', GCS_API_ENDPOINT: '' });
  t.type(s, LocalStore);
  t.equal(s.kind, 'local');
  t.equal((s as LocalStore).dir, join(dir, 'store'));
});

t.test('STORE=gcs', async (t) => {
  const s = createStore({ STORE: 'gcs', STORE_DIR: './data/store', GCS_BUCKET: 'my-bucket', GCS_API_ENDPOINT: 'http://127.0.0.1:4443' });
  t.type(s, GcsStore);
  t.equal(s.kind, 'gcs');
  t.equal((s as GcsStore).bucketName, 'my-bucket');
  t.equal((s as GcsStore).storage.apiEndpoint, 'http://127.0.0.1:4443');
  const prod = createStore({ STORE: 'gcs', GCS_BUCKET: ' prod-bucket ' }, { timeoutMs: 5000 }) as GcsStore;
  t.equal(prod.storage.apiEndpoint, 'https://storage.googleapis.com', 'no endpoint: the real service');
  t.equal(prod.bucketName, 'prod-bucket');
  t.equal(prod.timeoutMs, 5000, 'client options from the second argument');
});

t.test('bad configuration: clear, permanent errors', async (t) => {
  const cases: [StoreConfig, RegExp][] = [
    [{ STORE: 's3' }, /STORE must be "local" or "gcs", got "s3"/],
    [{ STORE: '' }, /STORE must be/],
    [{ STORE: 'local' }, /STORE=local needs STORE_DIR/],
    [{ STORE: 'local', STORE_DIR: '  ' }, /STORE=local needs STORE_DIR/],
    [{ STORE: 'gcs' }, /STORE=gcs needs GCS_BUCKET/],
    [{ STORE: 'gcs', GCS_BUCKET: '' }, /STORE=gcs needs GCS_BUCKET/],
    [{ STORE: 'gcs', GCS_BUCKET: 'Bad_Bucket!' }, /bad GCS_BUCKET\/GCS_API_ENDPOINT: .*bad bucket name/],
    [{ STORE: 'gcs', GCS_BUCKET: 'ok-bucket', GCS_API_ENDPOINT: 'localhost:4443' }, /GCS_API_ENDPOINT.*must be http/],
  ];
  for (const [cfg, re] of cases) {
    let err: unknown;
    try {
      createStore(cfg);
    } catch (e) {
      err = e;
    }
    t.type(err, StoreError, JSON.stringify(cfg));
    t.equal((err as StoreError).retryable, false);
    t.match((err as Error).message, re);
  }
});
