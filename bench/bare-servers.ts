/**
 * Bare baselines for the transport benchmark, run in their own process like a real peer: a
 * connect-node server with no interceptors whose KeywordResearch answers at once with the response
 * the real skill gives for the benchmark request (same bytes on the wire both ways, no work), and
 * a @grpc/grpc-js echo of the request bytes. Prints `ready <connectPort> <grpcPort>`.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { keywordResearch } from "../agents/research/skills/keyword-research.ts";
import { ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { benchRequest } from "./requests.ts";

const canned = keywordResearch(benchRequest());

const connectServer = http2.createServer(
  connectNodeAdapter({
    routes: (router) => router.service(ResearchService, { keywordResearch: () => canned }),
  }),
);
await new Promise<void>((r) => connectServer.listen(0, "127.0.0.1", r));

const passthrough = (b: Buffer) => b;
const echo: grpc.ServiceDefinition = {
  Echo: {
    path: "/bench.v1.EchoService/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: passthrough,
    requestDeserialize: passthrough,
    responseSerialize: passthrough,
    responseDeserialize: passthrough,
  },
};
const grpcServer = new grpc.Server();
grpcServer.addService(echo, {
  Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
});
const grpcPort = await new Promise<number>((resolve, reject) =>
  grpcServer.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) =>
    err ? reject(err) : resolve(port),
  ),
);
process.stdout.write(`ready ${(connectServer.address() as AddressInfo).port} ${grpcPort}\n`);
process.on("SIGTERM", () => process.exit(0));
