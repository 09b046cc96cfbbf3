/** The Social agent: per-platform adaptation and the content calendar, with durable scheduled publishing. */

import type { EntitySchema } from "@mikro-orm/postgresql";
import { SocialService } from "../../gen/mesh/social/v1/social_service_pb.ts";
import { type AgentDeps, defineAgent } from "../../lib/server/index.ts";
import { socialEntities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { createOutboxAdapter, createWebhookAdapter, type PublishAdapter } from "./publishing/adapters.ts";
import { cancelScheduledPost, listScheduledPosts, resolveScheduledPost } from "./publishing/operator.ts";
import { startPublisher } from "./publishing/worker.ts";
import { adaptSocialContent } from "./skills/adapt-social-content.ts";
import { planContentCalendar } from "./skills/plan-content-calendar.ts";

/**
 * The adapter posts go through on a server with this configuration: the signed webhook when
 * `MESH_SOCIAL_WEBHOOK_URL` is set (with `MESH_SOCIAL_WEBHOOK_SECRET`), else the outbox table.
 */
export function publishingAdapter(deps: Pick<AgentDeps, "config" | "db" | "now">): PublishAdapter {
  const { socialWebhookUrl, socialWebhookSecret } = deps.config;
  if (socialWebhookUrl !== undefined && socialWebhookSecret !== undefined) {
    return createWebhookAdapter({ url: socialWebhookUrl, secret: socialWebhookSecret, now: deps.now });
  }
  return createOutboxAdapter(deps.db, deps.now);
}

/** Social agent module. */
export const socialAgent = defineAgent({
  id: "social",
  service: SocialService,
  implemented: [
    "AdaptSocialContent",
    "PlanContentCalendar",
    "ListScheduledPosts",
    "CancelScheduledPost",
    "ResolveScheduledPost",
  ],
  data: { entities: socialEntities as readonly EntitySchema[], migrations },
  create: (deps) => ({
    adaptSocialContent: (req) => adaptSocialContent(req),
    planContentCalendar: (req) => planContentCalendar(deps, req),
    listScheduledPosts: (req) => listScheduledPosts(deps, req),
    cancelScheduledPost: (req) => cancelScheduledPost(deps, req),
    resolveScheduledPost: (req) => resolveScheduledPost(deps, req),
  }),
  // The publisher polls the stored due times on every instance hosting the agent; instances split
  // due posts with SKIP LOCKED, and a restart picks up where the last one stopped.
  background: (deps) => [
    startPublisher({
      db: deps.db,
      adapter: publishingAdapter(deps),
      log: deps.log,
      now: deps.now,
      nodeId: deps.nodeId,
    }),
  ],
});
