/** Plain HTTP routes a server answers besides its RPCs (agent cards, the directory's site and visitor endpoints). */
import type http from "node:http";
import type http2 from "node:http2";

/** A request a plain HTTP route sees (HTTP/1.1 or HTTP/2). */
export type HttpRequest = http.IncomingMessage | http2.Http2ServerRequest;
/** The response a plain HTTP route writes. */
export type HttpResponse = http.ServerResponse | http2.Http2ServerResponse;
/** A route: answers and resolves true when it handled the request, false to let the next route try. */
export type HttpRoute = (req: HttpRequest, res: HttpResponse) => Promise<boolean>;
