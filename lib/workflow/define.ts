/**
 * Typed workflow definitions. A workflow has a protobuf input type and steps: skill calls on any
 * agent (with retry policy, timeout and an optional compensation), approval gates (with timeout and
 * escalation) and waits for a domain event (with timeout). Steps name the steps they follow; steps
 * whose dependencies have all succeeded run in parallel.
 *
 * ```ts
 * export const example = defineWorkflow({
 *   name: "example",
 *   description: "…",
 *   input: KeywordOpportunityInputSchema,
 *   steps: (s) => {
 *     const research = s.skill("research", ResearchService.method.keywordResearch, {
 *       input: (c) => ({ keywords: [{ keyword: c.input.keyword }] }),
 *     });
 *     const approve = s.approval("approve", { after: [research], approvers: () => ["lead"], timeoutMs: 3_600_000 });
 *     return [research, approve];
 *   },
 * });
 * ```
 */
import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { EventType } from "../bus/index.ts";

/** What a step's functions see of the run. */
export interface StepContext<In> {
  /** The run's input. */
  readonly input: In;
  /** Run id. */
  readonly runId: string;
  /**
   * When the run started. Step inputs must be the same on every attempt (an agent deduplicates the
   * step on its key and refuses a repeat with other input), so use this instead of the clock.
   */
  readonly runStartedAt: Date;
  /** The output of an earlier, succeeded skill step this step depends on (directly or not). */
  output<O extends DescMessage>(step: SkillStep<DescMessage, O>): MessageShape<O>;
}

/** Attempts of a skill step whose retry policy names none. */
export const DEFAULT_STEP_ATTEMPTS = 8;

/**
 * The shortest time from a step's first attempt to its last under `retry` (each backoff is jittered
 * between half and all of its nominal delay): how long an agent may be away before the step fails.
 */
export function shortestRetryWindowMs(retry: Required<RetryPolicy>): number {
  let total = 0;
  for (let attempt = 1; attempt < retry.maxAttempts; attempt++) {
    total += Math.min(retry.maxBackoffMs, retry.initialBackoffMs * 2 ** (attempt - 1)) / 2;
  }
  return total;
}

/** Retry policy of a skill step. */
export interface RetryPolicy {
  /**
   * Attempts in all (default {@link DEFAULT_STEP_ATTEMPTS}: with the default backoff the last one
   * comes 45–90 s after the first — a server restart (about 12 s to SERVING) plus a caller's circuit
   * breaker half-open delay, several times over — so a restarting agent does not fail the step; with
   * 5 attempts the window was 7.5–15 s and a kill -9 of a server used all of them).
   */
  maxAttempts?: number;
  /** Delay before the second attempt (default 1 s); doubles each attempt, jittered between half and all of it. */
  initialBackoffMs?: number;
  /** Longest delay (default 30 s). */
  maxBackoffMs?: number;
}

interface StepBase {
  readonly name: string;
  readonly after: readonly string[];
}

/** A step calling a skill. */
export interface SkillStep<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> extends StepBase {
  readonly kind: "skill";
  readonly method: DescMethodUnary<I, O>;
  /** Computes the request (typed by the builder; called by the engine with the run's context). */
  readonly input: (ctx: never) => MessageInitShape<I>;
  readonly retry: Required<RetryPolicy>;
  /** Deadline of one attempt. */
  readonly timeoutMs: number;
  readonly compensate?: Compensation;
}

/** How a skill step is undone. */
export interface Compensation {
  readonly method: DescMethodUnary;
  readonly input: (ctx: never, output: never) => MessageInitShape<DescMessage>;
  readonly timeoutMs: number;
}

/** A human approval gate. */
export interface ApprovalStep extends StepBase {
  readonly kind: "approval";
  /** Who may approve at first. */
  readonly approvers: (ctx: never) => string[];
  /** Time allowed before the gate escalates (or fails, when no escalation level is left). */
  readonly timeoutMs: number;
  /** Approvers of each escalation level, in order. */
  readonly escalateTo: readonly (readonly string[])[];
}

/** A wait for a domain event. */
export interface WaitStep extends StepBase {
  readonly kind: "wait";
  readonly event: EventType;
  /** Whether an event of that type is the one this run waits for. */
  readonly match: (ctx: never, event: never) => boolean;
  /** Time allowed before the step fails. */
  readonly timeoutMs: number;
}

/** Any step. */
export type StepDefinition = SkillStep | ApprovalStep | WaitStep;

/** A workflow definition. */
export interface WorkflowDefinition<Desc extends DescMessage = DescMessage> {
  readonly name: string;
  readonly description: string;
  readonly input: Desc;
  readonly steps: readonly StepDefinition[];
}

type Dep = { readonly name: string };

/** Builds steps with the workflow's input type. */
export interface StepBuilder<In> {
  /** A step calling `method` (a unary skill RPC of any agent), optionally undone by `compensate`. */
  skill<I extends DescMessage, O extends DescMessage, CI extends DescMessage = DescMessage>(
    name: string,
    method: DescMethodUnary<I, O>,
    opts: {
      after?: readonly Dep[];
      input: (ctx: StepContext<In>) => MessageInitShape<I>;
      retry?: RetryPolicy;
      timeoutMs?: number;
      compensate?: {
        method: DescMethodUnary<CI>;
        input: (ctx: StepContext<In>, output: MessageShape<O>) => MessageInitShape<CI>;
        timeoutMs?: number;
      };
    },
  ): SkillStep<I, O>;
  /** An approval gate. */
  approval(
    name: string,
    opts: {
      after?: readonly Dep[];
      approvers: (ctx: StepContext<In>) => string[];
      timeoutMs: number;
      escalateTo?: readonly (readonly string[])[];
    },
  ): ApprovalStep;
  /** A wait for an event. */
  waitFor<E extends DescMessage>(
    name: string,
    event: EventType<E>,
    opts: {
      after?: readonly Dep[];
      match: (ctx: StepContext<In>, event: MessageShape<E>) => boolean;
      timeoutMs: number;
    },
  ): WaitStep;
}

const namePattern = /^[a-z][a-z0-9_]{0,62}$/;

/** Defines a workflow; checks names, dependencies and cycles. */
export function defineWorkflow<Desc extends DescMessage>(def: {
  name: string;
  description: string;
  input: Desc;
  /** Builds the steps, dependencies first. */
  steps: (s: StepBuilder<MessageShape<Desc>>) => StepDefinition[];
}): WorkflowDefinition<Desc> {
  if (!namePattern.test(def.name)) throw new Error(`workflow name ${def.name} must match ${namePattern}`);
  const after = (deps: readonly Dep[] | undefined) => (deps ?? []).map((d) => d.name);
  const builder = {
    skill(
      name: string,
      method: DescMethodUnary,
      opts: {
        after?: readonly Dep[];
        input: (ctx: never) => never;
        retry?: RetryPolicy;
        timeoutMs?: number;
        compensate?: { method: DescMethodUnary; input: (ctx: never, output: never) => never; timeoutMs?: number };
      },
    ): SkillStep {
      return {
        kind: "skill",
        name,
        after: after(opts.after),
        method,
        input: opts.input,
        retry: {
          maxAttempts: opts.retry?.maxAttempts ?? DEFAULT_STEP_ATTEMPTS,
          initialBackoffMs: opts.retry?.initialBackoffMs ?? 1000,
          maxBackoffMs: opts.retry?.maxBackoffMs ?? 30_000,
        },
        timeoutMs: opts.timeoutMs ?? 30_000,
        ...(opts.compensate
          ? {
              compensate: {
                method: opts.compensate.method,
                input: opts.compensate.input,
                timeoutMs: opts.compensate.timeoutMs ?? 30_000,
              },
            }
          : {}),
      };
    },
    approval(
      name: string,
      opts: {
        after?: readonly Dep[];
        approvers: (ctx: never) => string[];
        timeoutMs: number;
        escalateTo?: readonly (readonly string[])[];
      },
    ): ApprovalStep {
      return {
        kind: "approval",
        name,
        after: after(opts.after),
        approvers: opts.approvers,
        timeoutMs: opts.timeoutMs,
        escalateTo: opts.escalateTo ?? [],
      };
    },
    waitFor(
      name: string,
      event: EventType,
      opts: {
        after?: readonly Dep[];
        match: (ctx: never, event: never) => boolean;
        timeoutMs: number;
      },
    ): WaitStep {
      return { kind: "wait", name, after: after(opts.after), event, match: opts.match, timeoutMs: opts.timeoutMs };
    },
  };
  const steps = def.steps(builder as never);
  const seen = new Set<string>();
  for (const s of steps) {
    if (!namePattern.test(s.name)) throw new Error(`${def.name}: step name ${s.name} must match ${namePattern}`);
    if (seen.has(s.name)) throw new Error(`${def.name}: step ${s.name} is defined twice`);
    for (const d of s.after) {
      // Steps are listed in an order where dependencies come first, which also rules out cycles.
      if (!seen.has(d)) throw new Error(`${def.name}: step ${s.name} depends on ${d}, which is not defined before it`);
    }
    seen.add(s.name);
  }
  if (steps.length === 0) throw new Error(`${def.name}: a workflow needs at least one step`);
  return { name: def.name, description: def.description, input: def.input, steps };
}
