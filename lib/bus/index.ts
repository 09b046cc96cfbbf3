/**
 * Events and work over NATS JetStream: the bus (streams, durable consumers, fan-out), the
 * transactional outbox and its relay, prioritised task queues, dead letters, and trace context in
 * message headers.
 */

export {
  type BatchDelivery,
  type BatchHandler,
  type BatchOptions,
  claimInbox,
  consumeBatches,
  enqueueAll,
  inboxId,
} from "./batch.ts";
export {
  type Bus,
  type BusOptions,
  connectBus,
  type Delivery,
  type DeliveryHandler,
  type DurableSpec,
  decodeEvent,
  defineEvent,
  type EventType,
  PermanentError,
  type Redelivery,
  type RedeliveryPolicy,
  type Running,
  streamNames,
  TYPE_HEADER,
} from "./bus.ts";
export {
  type DeadLetter,
  type DeadLetterFilter,
  DeadLetterNotFoundError,
  deadLetterId,
  listDeadLetters,
  matchesDeadLetter,
  purgeDeadLetter,
  replayDeadLetter,
  scanDeadLetters,
  startDeadLetterMover,
  subjectMatches,
} from "./dlq.ts";
export { enqueue, enqueueEvent, type OutgoingMessage, startOutboxRelay } from "./outbox.ts";
export {
  type Level,
  levelOf,
  levels,
  type PriorityWorker,
  type PriorityWorkerOptions,
  publishTask,
  startPriorityWorker,
  taskSubject,
} from "./priority.ts";
export { type Carrier, injectTrace, withStoredTrace } from "./trace.ts";
