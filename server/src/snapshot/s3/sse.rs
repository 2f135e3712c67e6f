//! Server-side encryption on each kind of S3 request: SSE-S3 and SSE-KMS are requested when an
//! object is created (CreateMultipartUpload, CopyObject); SSE-C's key travels with every request
//! that reads or writes the object's bytes (parts, copies from and to it, GetObject).

use aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder;
use aws_sdk_s3::operation::upload_part_copy::builders::UploadPartCopyFluentBuilder;
use aws_sdk_s3::types::ServerSideEncryption;

use super::client::Sse;

/// SSE-C's only algorithm.
const SSE_C_ALGORITHM: &str = "AES256";

/// Adds the SSE-C headers (the customer key) of the object being written or read.
macro_rules! customer_key {
    ($request:expr, $sse:expr) => {
        match $sse {
            Sse::Customer { key, key_md5 } => $request
                .sse_customer_algorithm(SSE_C_ALGORITHM)
                .sse_customer_key(key)
                .sse_customer_key_md5(key_md5),
            _ => $request,
        }
    };
}

/// Adds SSE-S3 / SSE-KMS to a request creating an object.
macro_rules! managed_key {
    ($request:expr, $sse:expr) => {
        match $sse {
            Sse::Aes256 => $request.server_side_encryption(ServerSideEncryption::Aes256),
            Sse::Kms(id) => $request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(id.clone()),
            _ => $request,
        }
    };
}

/// Adds the SSE-C headers of the copy source.
macro_rules! copy_source_key {
    ($request:expr, $sse:expr) => {
        match $sse {
            Sse::Customer { key, key_md5 } => $request
                .copy_source_sse_customer_algorithm(SSE_C_ALGORITHM)
                .copy_source_sse_customer_key(key)
                .copy_source_sse_customer_key_md5(key_md5),
            _ => $request,
        }
    };
}

/// Encryption of a new multipart upload.
pub fn create_multipart(
    request: CreateMultipartUploadFluentBuilder,
    sse: &Sse,
) -> CreateMultipartUploadFluentBuilder {
    customer_key!(managed_key!(request, sse), sse)
}

/// SSE-C key of a part.
pub fn upload_part(request: UploadPartFluentBuilder, sse: &Sse) -> UploadPartFluentBuilder {
    customer_key!(request, sse)
}

/// Encryption of a copy's destination, and the SSE-C key of its source.
pub fn copy_object(request: CopyObjectFluentBuilder, sse: &Sse) -> CopyObjectFluentBuilder {
    copy_source_key!(customer_key!(managed_key!(request, sse), sse), sse)
}

/// SSE-C keys of a part copy (source and destination).
pub fn upload_part_copy(
    request: UploadPartCopyFluentBuilder,
    sse: &Sse,
) -> UploadPartCopyFluentBuilder {
    copy_source_key!(customer_key!(request, sse), sse)
}

/// SSE-C key to read an object.
pub fn get_object(request: GetObjectFluentBuilder, sse: &Sse) -> GetObjectFluentBuilder {
    customer_key!(request, sse)
}
