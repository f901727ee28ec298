.PHONY: proto check-proto

# proto regenerates dewypb/ from proto/dewy.proto (needs protoc; see the script).
proto:
	scripts/gen-proto.sh

# check-proto fails when dewypb/ is not what proto/dewy.proto generates.
check-proto:
	scripts/check-proto.sh
