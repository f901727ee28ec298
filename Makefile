.PHONY: proto

# proto regenerates dewypb/ from proto/dewy.proto (needs protoc; see the script).
proto:
	scripts/gen-proto.sh
