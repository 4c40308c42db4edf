{{ config(materialized='view') }}

{#-
    Scored applications whose label is known: each prediction joined to its application of the
    same month, rows with a NULL target left out. The calibration and performance marts read it.
-#}

with

predictions as (
    select * from {{ source('creditflow', 'predictions') }}
),

applications as (
    select * from {{ ref('int_applications_accumulated') }}
),

final as (
    select
        predictions.sk_id_curr,
        predictions.score_month as month,
        predictions.model_id,
        predictions.default_probability,
        applications.target
    from predictions
    inner join applications
        on
            predictions.sk_id_curr = applications.sk_id_curr
            and predictions.score_month = applications.month
    where applications.target is not null
)

select * from final
