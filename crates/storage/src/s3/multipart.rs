//! The multipart calls: the final assembly of an upload into its blob, and
//! the listing and aborting of assemblies that died. Same client, same
//! error mapping as the object calls.

use super::client::{Call, S3Client};
use super::{sigv4, xml};
use berth_core::StoreError;
use bytes::Bytes;
use reqwest::Method;

/// An S3 multipart upload as ListMultipartUploads reports it.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    pub key: String,
    pub upload_id: String,
    /// Unix seconds; `None` when the server sent no parsable time.
    pub initiated: Option<u64>,
}

impl S3Client {
    pub async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        let call = Call::new("CreateMultipartUpload", Method::POST, key)
            .query("uploads", "")
            .body(Bytes::new());
        let (_, body) = self.text(call).await?;
        xml::first(&body, "UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| StoreError::Io(format!("S3 CreateMultipartUpload {key:?}: no UploadId")))
    }

    /// Uploads part `number` and answers its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        let call = Call::new("UploadPart", Method::PUT, key)
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .body(body);
        let (headers, _) = self.text(call).await?;
        headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Io(format!("S3 UploadPart {key:?}: no ETag")))
    }

    /// Makes part `number` from `len` bytes of `source` at `offset`, inside
    /// the store (UploadPartCopy), and answers its ETag.
    pub async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        source: &str,
        offset: u64,
        len: u64,
    ) -> Result<String, StoreError> {
        let last = (offset + len).saturating_sub(1);
        let call = Call::new("UploadPartCopy", Method::PUT, key)
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .header("x-amz-copy-source", self.copy_source(source))
            .header("x-amz-copy-source-range", format!("bytes={offset}-{last}"))
            .body(Bytes::new());
        let (_, body) = self.text(call).await?;
        Self::embedded_error("UploadPartCopy", key, &body)?;
        xml::first(&body, "ETag")
            .ok_or_else(|| StoreError::Io(format!("S3 UploadPartCopy {key:?}: no ETag")))
    }

    /// `x-amz-copy-source` naming the object `source` of this bucket.
    fn copy_source(&self, source: &str) -> String {
        format!(
            "/{}/{}",
            sigv4::uri_encode(self.bucket(), false),
            sigv4::uri_encode(source, true)
        )
    }

    /// Makes `key` a copy of the whole object `source`, inside the store
    /// (CopyObject): the object appears whole, atomically.
    pub async fn copy_object(&self, key: &str, source: &str) -> Result<(), StoreError> {
        let call = Call::new("CopyObject", Method::PUT, key)
            .header("x-amz-copy-source", self.copy_source(source))
            .body(Bytes::new());
        let (_, body) = self.text(call).await?;
        Self::embedded_error("CopyObject", key, &body)
    }

    /// Completes an upload from its `(number, etag)` parts in order: the
    /// object appears whole, atomically.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), StoreError> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                xml::escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let call = Call::new("CompleteMultipartUpload", Method::POST, key)
            .query("uploadId", upload_id)
            .header("content-type", "application/xml")
            .body(Bytes::from(body));
        let (_, body) = self.text(call).await?;
        Self::embedded_error("CompleteMultipartUpload", key, &body)
    }

    /// Aborts an upload; an unknown one is not an error.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let call =
            Call::new("AbortMultipartUpload", Method::DELETE, key).query("uploadId", upload_id);
        match self.text(call).await {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every multipart upload in progress under `prefix`, all pages.
    pub async fn list_multipart(&self, prefix: &str) -> Result<Vec<MultipartUpload>, StoreError> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut call = Call::new("ListMultipartUploads", Method::GET, "").query("uploads", "");
            if !prefix.is_empty() {
                call = call.query("prefix", prefix);
            }
            if let Some((key, id)) = &markers {
                call = call
                    .query("key-marker", key.clone())
                    .query("upload-id-marker", id.clone());
            }
            let (_, body) = self.text(call).await?;
            for upload in xml::elements(&body, "Upload") {
                let (Some(key), Some(upload_id)) =
                    (xml::first(upload, "Key"), xml::first(upload, "UploadId"))
                else {
                    continue;
                };
                let initiated =
                    xml::first(upload, "Initiated").and_then(|t| sigv4::parse_iso8601(&t));
                out.push(MultipartUpload {
                    key,
                    upload_id,
                    initiated,
                });
            }
            if xml::first(&body, "IsTruncated").as_deref() != Some("true") {
                return Ok(out);
            }
            let next = (
                xml::first(&body, "NextKeyMarker").unwrap_or_default(),
                xml::first(&body, "NextUploadIdMarker").unwrap_or_default(),
            );
            if next.0.is_empty() || markers.as_ref() == Some(&next) {
                return Err(StoreError::Io(
                    "S3 ListMultipartUploads: truncated without progress".into(),
                ));
            }
            markers = Some(next);
        }
    }
}
