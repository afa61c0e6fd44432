// The durable private-cloud audio path: shard spool (journal + group commit), recovery, uploader.
export { announceSealed, onSealedAnnouncement, SEALED_CHANNEL, type SealedMessage } from './channel.js';
export { checkFormat, inspectChunk, type SpoolFormat } from './format.js';
export { isValidConversationId, isValidUid, objectName, parseObjectName, SpoolInputError, UNNAMED_CONVERSATION } from './names.js';
export { SpoolQuota } from './quota.js';
export { recoverSpool, type RecoverOptions, type RecoverResult } from './recover.js';
export {
  SessionSpool,
  ShardSpool,
  type CommitStats,
  type OpenSessionOptions,
  type SealedChunk,
  type ShardSpoolOptions,
  type ShardSpoolStats,
} from './shard-spool.js';
export { audioMetadata, Uploader, type UploaderOptions, type UploaderStats } from './uploader.js';
export { createUploaderWorker, type UploaderApi, type UploaderWorkerData } from './uploader-worker.js';
