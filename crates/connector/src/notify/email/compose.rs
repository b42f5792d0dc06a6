//! One invitation's mail, whole: the QR code of its link, its templates
//! rendered, the MIME message with its images inline, DKIM last. The
//! dispatcher composes every mail here, and `mail preview` / `mail test`
//! compose theirs here too (with a placeholder link and unsubscribe
//! token), so a preview is the mail a member gets.

use base64::Engine;
use lettre::Message;
use lettre::message::Mailbox;

use super::message::{InlineImage, logo_content_id, qr_content_id};
use super::{
    MailContext, MailHeaders, MessageError, RenderError, Signer, Templates, build_message,
};
use crate::domain::Invitee;

/// What one mail is about, before it is rendered.
pub struct Draft<'a> {
    /// The invitation's id (Content-IDs; the Message-ID without a token).
    pub id: u64,
    pub campaign: &'a str,
    pub invitee: &'a Invitee,
    /// Where it goes: the invitee's address, or `mail test --to`.
    pub to: &'a str,
    /// `connect`, `update` or `identify`.
    pub kind: &'a str,
    pub version: u32,
    /// 0 for the first mail; n for the n-th reminder.
    pub reminder: u32,
    pub max_reminders: u32,
    pub link: &'a str,
    pub unsubscribe_url: &'a str,
    pub headers: MailHeaders,
    /// Put before the rendered subject (`mail test`: "[test]").
    pub subject_prefix: Option<&'a str>,
}

/// A composed mail: the message to send, and its HTML part with the images
/// it shows (for a preview in a browser).
pub struct Composed {
    pub message: Message,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub images: Vec<InlineImage>,
}

impl Composed {
    /// The HTML part as a browser shows it from a file: each `cid:` image
    /// as a `data:` URL.
    pub fn html_for_browser(&self) -> String {
        let mut html = self.html.clone();
        for image in &self.images {
            let data = base64::engine::general_purpose::STANDARD.encode(&image.bytes);
            html = html.replace(
                &format!("cid:{}", image.content_id),
                &format!("data:{};base64,{data}", image.content_type),
            );
        }
        html
    }
}

/// Why a mail could not be composed (the invitation fails with this text).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{0}")]
    Qr(mydex_qr::LinkQrError),
    #[error("{0}")]
    Render(RenderError),
    #[error("{0}")]
    Message(MessageError),
}

/// Compose `draft` from `from` with `templates`; signed when `signer` is.
pub fn compose(
    templates: &Templates,
    from: &Mailbox,
    signer: Option<&Signer>,
    draft: Draft<'_>,
) -> Result<Composed, ComposeError> {
    let qr = super::qr_png(draft.link).map_err(ComposeError::Qr)?;
    let qr_id = qr_content_id(draft.id, from);
    let qr_src = format!("cid:{qr_id}");
    let mut images = vec![InlineImage {
        content_id: qr_id,
        content_type: "image/png",
        bytes: qr,
    }];
    let logo_src = templates.organisation().logo.as_ref().map(|logo| {
        let id = logo_content_id(draft.id, from);
        images.push(InlineImage {
            content_id: id.clone(),
            content_type: logo.content_type,
            bytes: logo.bytes.to_vec(),
        });
        format!("cid:{id}")
    });
    let invitee = draft.invitee;
    let ctx = MailContext {
        name: invitee.name.as_deref(),
        email: invitee.email.as_str(),
        external_ref: invitee.external_ref.as_deref(),
        mydexid: invitee.mydexid.as_ref().map(|m| m.as_str()),
        campaign: draft.campaign,
        kind: draft.kind,
        version: draft.version,
        reminder: draft.reminder,
        max_reminders: draft.max_reminders,
        link: draft.link,
        qr_src: &qr_src,
        logo_src: logo_src.as_deref(),
        unsubscribe_url: draft.unsubscribe_url,
        subject: String::new(),
        vars: &invitee.vars,
    };
    let mut rendered = templates
        .render(draft.campaign, ctx)
        .map_err(ComposeError::Render)?;
    if let Some(prefix) = draft.subject_prefix {
        rendered.subject = format!("{prefix} {}", rendered.subject);
    }
    let mut message = build_message(
        &draft.headers,
        from,
        invitee.name.as_deref(),
        draft.to,
        draft.id,
        &rendered,
        &images,
    )
    .map_err(ComposeError::Message)?;
    if let Some(signer) = signer {
        signer.sign(&mut message);
    }
    Ok(Composed {
        message,
        subject: rendered.subject,
        html: rendered.html,
        text: rendered.text,
        images,
    })
}
