#!/usr/bin/python3
"""A Python client of blockserve, built from proto/ with Debian's protoc, grpc_python_plugin and grpcio.

Usage: python_client_test.py SOURCE_DIR PORT
Checks: health (grpc.health.v1) answers SERVING, server reflection lists the service, a
session is created, Generate streams several chunks before its Final, Tokenize/Score work.
Exits non-zero with a message on any failure.
"""
import os
import subprocess
import sys
import tempfile


def main():
    source_dir, port = sys.argv[1], sys.argv[2]
    out = tempfile.mkdtemp(prefix="blockserve_py_")
    # Debian's system protoc (3.21, proto3 `optional` support) with the gRPC Python plugin;
    # python3-grpc-tools bundles an older protoc that rejects `optional`.
    proto_dir = os.path.join(source_dir, "proto")
    for proto in ("blockserve/v1/model_info.proto", "blockserve/v1/blockserve.proto"):
        rc = subprocess.call(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                              "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                              os.path.join(proto_dir, proto)])
        if rc != 0:
            sys.exit(f"protoc failed for {proto}")
    sys.path.insert(0, out)
    import grpc
    from blockserve.v1 import blockserve_pb2 as pb
    from blockserve.v1 import blockserve_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=30)

    # Health: the standard service, hand-encoded (HealthCheckRequest{} is empty; the response
    # is field 1 = status varint).
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda x: x, response_deserializer=lambda x: x)
    reply = check(b"", timeout=10)
    if reply != b"\x08\x01":
        sys.exit(f"health: expected SERVING (08 01), got {reply.hex()}")

    # Reflection: list services (ServerReflectionRequest field 7 = list_services "").
    reflect = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                    request_serializer=lambda x: x, response_deserializer=lambda x: x)
    answers = list(reflect(iter([b"\x3a\x00"]), timeout=10))
    if not answers or b"blockserve.v1.Blockserve" not in answers[0]:
        sys.exit(f"reflection: blockserve.v1.Blockserve not listed: {answers!r}")

    stub = pb_grpc.BlockserveStub(channel)
    models = stub.ListModels(pb.ListModelsRequest(), timeout=10)
    if len(models.models) != 1 or models.models[0].family != "brt":
        sys.exit(f"ListModels: {models}")
    session = stub.CreateSession(pb.CreateSessionRequest(), timeout=10)
    request = pb.GenerateRequest(session_id=session.session_id, text="In the beginning",
                                 sampling=pb.SamplingParams(temperature=0.0),
                                 stop=pb.StopParams(max_new_tokens=12, ignore_eos=True))
    chunks, final = 0, None
    text = ""
    for msg in stub.Generate(request, timeout=60):
        if msg.HasField("chunk"):
            if final is not None:
                sys.exit("Generate: a chunk after the final message")
            chunks += 1
            text += msg.chunk.text
        else:
            final = msg.final
    if final is None or chunks < 2:
        sys.exit(f"Generate: {chunks} chunks, final {final}")
    if final.generated_tokens != 12 or final.finish_reason != pb.FINISH_REASON_LENGTH:
        sys.exit(f"Generate: unexpected final {final}")
    info = stub.GetSession(pb.GetSessionRequest(session_id=session.session_id), timeout=10)
    if info.tokens != final.session_tokens:
        sys.exit(f"GetSession: {info.tokens} tokens, the final said {final.session_tokens}")
    tokens = stub.Tokenize(pb.TokenizeRequest(text="In the beginning"), timeout=10)
    score = stub.Score(pb.ScoreRequest(text="In the beginning God created"), timeout=30)
    if not tokens.token_ids or score.tokens <= 0 or score.bits_per_token <= 0:
        sys.exit(f"Tokenize/Score: {tokens} {score}")
    try:
        stub.GetSession(pb.GetSessionRequest(session_id="0" * 32), timeout=10)
        sys.exit("GetSession of an unknown id succeeded")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            sys.exit(f"GetSession of an unknown id: {e.code()}")
    print(f"python client ok: {chunks} chunks, text {text!r}, score {score.bits_per_token:.3f} bits/token")


if __name__ == "__main__":
    main()
